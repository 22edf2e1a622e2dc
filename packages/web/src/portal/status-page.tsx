import { useEffect, useState } from "preact/hooks";
import { day, dayTime, subjectName } from "../shared/format.js";
import { shortSerial, subjectFields } from "../shared/policy.js";
import { pick, t, useLang } from "../shared/i18n.js";
import { asProblem, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";
import type { AgentClient, TokenStatus } from "./agent-client.js";
import { StartButton } from "./operation-page.js";

type CertStatus = TokenStatus["certificates"][number];

export interface PageCtx { agent: AgentClient; lostPairing: (e: unknown) => boolean }

/** The agent's tokens, as GET /v1/tokens gives them (an array, or {tokens} from a newer agent). */
export function useTokens(ctx: PageCtx): { tokens: TokenStatus[] | null; problem: Problem | null; reload: () => void } {
  const [tokens, setTokens] = useState<TokenStatus[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    setTokens(null); setProblem(null);
    ctx.agent.tokens().then((r) => {
      if (live) setTokens(Array.isArray(r) ? r : (r as { tokens?: TokenStatus[] }).tokens ?? []);
    }, (e: unknown) => {
      if (live && !ctx.lostPairing(e)) setProblem(asProblem(e, "AGENT_NOT_RUNNING"));
    });
    return () => { live = false; };
  }, [n]);
  return { tokens, problem, reload: () => setN((x) => x + 1) };
}

/** "valid", "expiring in N days", "expired N days ago" ... in words, with the class that colours it. */
export function stateWords(c: CertStatus): { text: string; cls: string } {
  switch (c.state) {
    case "valid": return { text: t("cert.valid", { n: c.daysLeft }), cls: "ok" };
    case "expiring": return { text: t("cert.expiring", { n: c.daysLeft }), cls: "warn" };
    case "expired": return { text: t("cert.expired", { n: -c.daysLeft }), cls: "bad" };
    case "not-yet-valid": return { text: t("cert.notYetValid"), cls: "muted" };
    case "revoked": return { text: t("cert.revoked"), cls: "bad" };
    case "on-hold": return { text: t("cert.onHold"), cls: "bad" };
    case "superseded": return { text: t("cert.superseded"), cls: "muted" };
    default: return { text: t("cert.unknown"), cls: "muted" };
  }
}

/** The end of a pause on online renewal (RENEWAL_LOCKED) still running now, else undefined. */
export function lockedUntil(c: CertStatus): string | undefined {
  const until = c.advice?.lockedUntil;
  return until && Date.parse(until) > Date.now() ? until : undefined;
}

/** True when the server's advice lets this certificate be renewed on the web now (its window open, no pause). */
export function renewable(c: CertStatus): boolean {
  return c.certificate.hasKey && c.pairHalf !== "encryption" && (c.advice?.window === "open" || c.advice?.window === "open-step-up") && !lockedUntil(c);
}

/** One certificate in words and dates: state, validity, and the renewal window's dates. */
export function CertificateCard(props: { c: CertStatus; tokenSerial: string; noAction?: boolean }) {
  useLang();
  const c = props.c;
  const w = stateWords(c);
  const a = c.advice;
  const subject = subjectFields(c.certificate.subject);
  return (
    <article class={`cert ${w.cls}`} data-serial={c.certificate.serialHex} data-state={c.state}>
      <h3 title={c.certificate.subject}>{subjectName(c.certificate.subject)}</h3>
      <p class={`state ${w.cls}`}><strong>{w.text}</strong></p>
      {c.pairHalf === "encryption" ? <p class="hint" data-pair-half="encryption">{t("cert.encryptionHalf")}</p> : null}
      {c.state === "on-hold" ? <p class="bad" role="note" data-note="on-hold">{t("cert.onHoldRemedy")}</p> : null}
      <dl>
        <dt>{t("cert.validity")}</dt><dd>{day(c.certificate.notBefore)} — {day(c.certificate.notAfter)}</dd>
        {/* Issue 16: the subject as the holder reads it, the DN and the whole serial only as tooltips. */}
        {subject.organisation ? <><dt>{t("preview.organisation")}</dt><dd data-field="organisation" title={c.certificate.subject}>{subject.organisation}</dd></> : null}
        {subject.id ? <><dt>{t("preview.id")}</dt><dd data-field="id" title={c.certificate.subject}>{subject.id}</dd></> : null}
        {!subject.name ? <><dt>{t("cert.subject")}</dt><dd class="hint">{c.certificate.subject}</dd></> : null}
        <dt>{t("preview.serialTail")}</dt><dd data-field="serial" title={c.certificate.serialHex}><code>{shortSerial(c.certificate.serialHex)}</code></dd>
        <dt>{t("cert.issuer")}</dt><dd title={c.certificate.issuer}>{subjectName(c.certificate.issuer)}</dd>
        {/* A pair's encryption certificate has no renewal of its own: its signing one's card says when. */}
        {c.pairHalf === "encryption" ? null : <><dt>{t("cert.window")}</dt>
        <dd class="window" data-window={a?.window ?? "unknown"}>
          {a ? <>
            <span>{t(`window.${a.window}`)}</span>
            {a.opensAt || a.closesAt ? <span> · {t("window.dates", { from: day(a.opensAt), to: day(a.closesAt) })}</span> : null}
            {a.explanation ? <p class="hint">{pick(a.explanation)}</p> : null}
            {c.state === "expiring" && a.loginRefusedFrom ? <p class="bad" role="note" data-login-refused-from={a.loginRefusedFrom}>{t("cert.loginRefused", { date: day(a.loginRefusedFrom) })}</p> : null}
            {lockedUntil(c) ? <p class="bad" role="note" data-locked-until={lockedUntil(c)}>{t("cert.locked", { at: dayTime(lockedUntil(c)) })}</p> : null}
          </> : t("window.unknown")}
        </dd></>}
      </dl>
      {renewable(c) && !props.noAction
        ? <a class="button primary" href={`#/renew?token=${encodeURIComponent(props.tokenSerial)}&cert=${encodeURIComponent(c.certificate.serialHex)}`}>{t("cert.renew")}</a>
        : null}
    </article>
  );
}

/**
 * A certificate file whose certificates the agent cannot list before its
 * PIN: the PIN is asked in the agent's own window (an operation), never here;
 * afterwards the page at `returnTo` lists them.
 */
export function ReadCertificates(props: { ctx: PageCtx; tokenSerial: string; returnTo: string }) {
  useLang();
  return (
    <div class="card" data-hidden-certs={props.tokenSerial}>
      <p>{t("status.hidden")}</p>
      <StartButton ctx={props.ctx} primary label={t("status.readCerts")} returnTo={props.returnTo}
        request={{ kind: "read-certificates", tokenSerial: props.tokenSerial }} />
    </div>
  );
}

/** The holder's keys and their certificates, in words and dates. */
export function StatusPage(props: PageCtx) {
  useLang();
  const { tokens, problem, reload } = useTokens(props);
  if (problem) return <div class="page"><ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /><button type="button" onClick={reload}>{t("common.retry")}</button></div>;
  if (!tokens) return <Busy label={t("status.reading")} />;
  return (
    <div class="page" data-page="status">
      <h1>{t("status.title")}</h1>
      {tokens.length === 0 ? (
        <section class="empty">
          <p>{t("status.noKey")}</p>
          <button type="button" class="primary" onClick={reload}>{t("status.refresh")}</button>
        </section>
      ) : tokens.map((tk) => (
        <section class="token" data-token={tk.token.serial} aria-labelledby={`tk-${tk.token.serial}`}>
          <h2 id={`tk-${tk.token.serial}`}>{tk.token.label || tk.token.model} <small>{t("status.tokenSerial")} {tk.token.serial}</small></h2>
          <p class="hint">
            {tk.vendor ? pick(tk.vendor.name) : tk.token.manufacturer}{tk.vendor?.generation ? ` · ${tk.vendor.generation}` : ""}
            {tk.token.backend === "pkcs12" ? ` · ${t("status.file")}` : ""}
          </p>
          {tk.token.pin.locked ? <p class="bad" role="alert">{t("status.pinLocked")}</p> : tk.token.pin.finalTry ? <p class="warn">{t("status.pinFinalTry")}</p> : tk.token.pin.countLow ? <p class="warn">{t("status.pinCountLow")}</p> : null}
          {tk.certificatesHidden ? <ReadCertificates ctx={props} tokenSerial={tk.token.serial} returnTo="#/" />
            : tk.certificates.length === 0 ? (
              <p data-no-cert={tk.token.serial}>{t("status.noCert")}{" "}
                <a class="button primary" href={`#/redownload?token=${encodeURIComponent(tk.token.serial)}`}>{t("redownload.link")}</a>{" "}
                <a href={`#/download?token=${encodeURIComponent(tk.token.serial)}`}>{t("nav.download")}</a></p>
            ) : null}
          <div class="certs">{tk.certificates.map((c) => <CertificateCard c={c} tokenSerial={tk.token.serial} />)}</div>
          {tk.invalidObjects > 0 ? (
            <p class="hint">{t("status.invalidObjects", { n: tk.invalidObjects })}{" "}
              <StartButton ctx={props} request={{ kind: "clean-up", tokenSerial: tk.token.serial }} label={t("status.cleanUp")} /></p>
          ) : null}
        </section>
      ))}
    </div>
  );
}
