import { useEffect, useRef, useState } from "preact/hooks";
import type { DoctorCheck, IssuedCertificate, RenewResult } from "../../../agent/src/flows/flow-types.js";
import type { OperationInput } from "../../../agent/src/local-api/protocol.js";
import type { CertificatePreview } from "../../../agent/src/prompter.js";
import { day, dayTime, subjectName } from "../shared/format.js";
import { keyAlgorithmLabel, shortSerial, subjectFields } from "../shared/policy.js";
import { pick, t, useLang } from "../shared/i18n.js";
import { asProblem, problemOf, readProblem, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";
import type { OperationAnswer, OperationRequest, OperationView } from "./agent-client.js";
import { Steps } from "./agent-pages.js";
import type { PageCtx } from "./status-page.js";
import { QrCode } from "./step-up-page.js";

const OPS_KEY = "ukey.operations";
const RETURN_KEY = "ukey.operationReturn";

/** Where the portal goes when the operation `id` is done (only "read-certificates" goes back by itself). */
function returnOf(id: string): string | undefined {
  try {
    const r = (JSON.parse(sessionStorage.getItem(RETURN_KEY) ?? "{}") as Record<string, string>)[id];
    return r && r.startsWith("#/") ? r : undefined;
  } catch { return undefined; }
}

function rememberedOps(): Record<string, OperationRequest> {
  try { return JSON.parse(localStorage.getItem(OPS_KEY) ?? "{}") as Record<string, OperationRequest>; } catch { return {}; }
}
function remember(id: string, req: OperationRequest) {
  // Never the codes of a download: only what is needed to start the same kind of operation again.
  const safe: OperationRequest = req.kind === "download" ? { ...req, authorizationCode: "" } : req;
  const all = { ...rememberedOps(), [id]: safe };
  try { localStorage.setItem(OPS_KEY, JSON.stringify(Object.fromEntries(Object.entries(all).slice(-10)))); } catch { /* the page still works */ }
}

/** Starts an operation in the agent and opens its page (which survives a reload: the id is in the address). */
export async function startOperation(ctx: PageCtx, req: OperationRequest, returnTo?: string): Promise<void> {
  const v = await ctx.agent.start(req);
  remember(v.id, req);
  if (returnTo) {
    try { sessionStorage.setItem(RETURN_KEY, JSON.stringify({ [v.id]: returnTo })); } catch { /* the result page links back instead */ }
  }
  location.hash = `#/op/${encodeURIComponent(v.id)}`;
}

/** A button that starts an operation, showing any refusal next to it. */
export function StartButton(props: { ctx: PageCtx; request: OperationRequest; label: string; primary?: boolean; disabled?: boolean; returnTo?: string }) {
  useLang();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  return (
    <>
      <button type="button" class={props.primary ? "primary" : ""} disabled={busy || props.disabled} onClick={async () => {
        setBusy(true); setProblem(null);
        try { await startOperation(props.ctx, props.request, props.returnTo); } catch (e) { if (!props.ctx.lostPairing(e)) setProblem(asProblem(e, "AGENT_NOT_RUNNING")); } finally { setBusy(false); }
      }}>{props.label}</button>
      {problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}
    </>
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One operation of the agent, followed to its end: the wizard's steps,
 * what the agent asks for (PIN in the agent's own window; ID number;
 * one-time code with the masked phone and a resend countdown; step-up;
 * confirmation), visible progress, then the result or the error with its
 * remedy. A reload, a lost pairing or a lost connection come back to the
 * same operation.
 */
export function OperationPage(props: PageCtx & { id: string }) {
  useLang();
  const [view, setView] = useState<OperationView | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [round, setRound] = useState(0);

  useEffect(() => {
    let live = true;
    void (async () => {
      let after = 0;
      let last = "";
      let revision: number | undefined;
      for (let first = true; live; first = false) {
        const began = Date.now();
        try {
          const v = await props.agent.operation(props.id, after, first ? 0 : 25, first ? undefined : revision);
          if (!live) return;
          setProblem(null);
          setView(v);
          after = v.progress.length;
          revision = v.revision;
          if (v.state === "done" || v.state === "failed") return;
          const sig = `${v.state}|${after}|${JSON.stringify(v.input ?? null)}`;
          // An agent that answers at once without news is not spun against.
          if (sig === last && Date.now() - began < 500) await sleep(1000);
          last = sig;
        } catch (e) {
          if (!live || props.lostPairing(e)) return;
          const p = asProblem(e, "AGENT_NOT_RUNNING");
          setProblem(p);
          if (p.code !== "AGENT_NOT_RUNNING") return;
          await sleep(3000);
        }
      }
    })();
    return () => { live = false; };
  }, [props.id, round]);

  const answer = async (a: OperationAnswer) => {
    try { setView(await props.agent.answer(props.id, a)); } catch (e) { if (!props.lostPairing(e)) setProblem(asProblem(e, "AGENT_NOT_RUNNING")); }
  };
  const again = rememberedOps()[props.id];
  // Reading a file's certificates is a means, not an end: once done, the page that asked for it lists them.
  useEffect(() => {
    if (view?.state === "done" && view.kind === "read-certificates") location.hash = returnOf(props.id) ?? "#/";
  }, [view?.state, view?.kind]);

  if (!view) {
    return problem ? <div class="page" data-page="operation"><ProblemView problem={problem} helpHref={`#/help/${problem.code}`} />
      <Actions ctx={props} again={again} onRetry={() => setRound((n) => n + 1)} /></div> : <Busy />;
  }
  const isWizard = view.kind === "renew";
  // The agent no longer knows the operation (it was stopped or restarted): it has ended here too, and can be started again.
  const lost = problem?.code === "OPERATION_NOT_FOUND";
  const failed = view.state === "failed" || lost;
  // The preview (a confirm before the PIN) is still the choice of the certificate: step 3 of the wizard.
  const step = view.state === "done" ? 5 : failed ? stepOf(view) : view.state === "needs-input" ? (view.input?.kind === "confirm" ? 2 : 3) : 4;
  return (
    <div class="page" data-page="operation" data-kind={view.kind} data-state={lost ? "lost" : view.state}>
      {isWizard ? <Steps current={step} failed={failed} /> : null}
      <h1>{t(`op.${view.kind}`)}</h1>
      {problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}
      {lost ? <Actions ctx={props} again={again} /> : null}
      {view.state === "needs-input" && view.input && !lost ? <InputForm input={view.input} agentBase={props.agent.base} onAnswer={answer} /> : null}
      <ProgressView view={lost ? { ...view, state: "failed" } : view} />
      {view.state === "done" ? <ResultView kind={view.kind} result={view.result} /> : null}
      {view.state === "failed" ? (() => {
        const p = readProblem(view.error);
        // Starting again cannot help while the certificate is on hold or revoked: only the way back.
        const hopeless = p.code === "CERT_ON_HOLD" || p.code === "CERT_REVOKED";
        return <><ProblemView problem={p} helpHref={`#/help/${p.code}`} /><Actions ctx={props} {...(hopeless ? {} : { again })} /></>;
      })() : null}
    </div>
  );
}

/** The wizard's step an operation had reached by its last progress event (where a failure is shown). */
function stepOf(view: OperationView): number {
  const last = view.progress.at(-1)?.step ?? "";
  if (["prove-possession", "step-up", "verify-identity", "verify-code"].includes(last)) return 3;
  if (["generate-key", "submit-csr", "install", "confirm", "clean-up", "done"].includes(last)) return 4;
  return 2;
}

function Actions(props: { ctx: PageCtx; again?: OperationRequest; onRetry?: () => void }) {
  useLang();
  const again = props.again;
  return (
    <p class="actions">
      {props.onRetry ? <button type="button" onClick={props.onRetry}>{t("common.retry")}</button> : null}
      {again && !(again.kind === "download" && !again.authorizationCode)
        ? <StartButton ctx={props.ctx} request={again} label={t("op.startAgain")} primary /> : null}
      {again?.kind === "download" ? <a class="button" href={`#/download?token=${encodeURIComponent(again.tokenSerial)}`}>{t("op.startAgain")}</a> : null}
      {" "}<a class="button" href="#/">{t("op.backToStatus")}</a>
    </p>
  );
}

function ProgressView(props: { view: OperationView }) {
  useLang();
  const v = props.view;
  const pct = v.state === "done" ? 100 : Math.min(90, 8 + v.progress.length * 12);
  const last = v.progress.at(-1);
  const onKey = last && (last.step === "press-button" || last.step === "key-pad") ? last : undefined;
  return (
    <section class="progress" aria-label={t("op.progress")}>
      <progress max={100} value={pct} aria-label={t("op.progress")} />
      <ol class="progress-log" aria-live="polite">
        {v.progress.map((p, i) => (
          <li class={i === v.progress.length - 1 && v.state === "running" ? "current" : "done"} data-step={p.step}>
            <time>{dayTime(p.at).slice(11)}</time> {pick({ zh: p.zh, en: p.en })}
          </li>
        ))}
      </ol>
      {v.state === "running" && onKey ? <OnKeyNotice event={onKey} /> : null}
      {v.state === "running" ? <p class="hint" role="status">{t("op.running")}</p> : null}
    </section>
  );
}

/** The key waits for the holder (its OK button, or its PIN pad): said large, with the key's own timeout counted down when known. */
function OnKeyNotice(props: { event: OperationView["progress"][number] }) {
  useLang();
  const e = props.event;
  const until = e.timeoutSeconds !== undefined ? new Date(Date.parse(e.at) + e.timeoutSeconds * 1000).toISOString() : "";
  const left = useCountdown(until);
  return (
    <div class="on-key" role="alert" data-step={e.step}>
      <strong>{t("op.onKey")}</strong>
      <p>{pick({ zh: e.zh, en: e.en })}</p>
      {e.timeoutSeconds !== undefined ? <p class="countdown">{t("op.onKeyLeft", { n: left })}</p> : null}
    </div>
  );
}

function InputForm(props: { input: OperationInput; agentBase: string; onAnswer: (a: OperationAnswer) => Promise<void> }) {
  useLang();
  const input = props.input;
  const retry: { code: string; triesLeft?: number } | undefined = "retry" in input && input.retry ? input.retry : undefined;
  const triesLeft = retry?.triesLeft;
  const retryProblem = retry ? problemOf(retry.code, triesLeft !== undefined ? { triesLeft } : {}) : null;
  return (
    <section class="card input" data-input={input.kind}>
      {retryProblem ? <ProblemView problem={retryProblem} helpHref={`#/help/${retryProblem.code}`}>
        {triesLeft !== undefined && input.kind === "pin" ? <p class="warn">{t("verify.triesLeft", { n: triesLeft })}</p> : null}
      </ProblemView> : null}
      {input.kind === "pin" ? <PinInput input={input} agentBase={props.agentBase} /> : null}
      {input.kind === "id-number" ? <IdNumberInput idType={input.idType} onAnswer={props.onAnswer} /> : null}
      {input.kind === "one-time-code" ? <OneTimeCodeInput input={input} onAnswer={props.onAnswer} /> : null}
      {input.kind === "step-up" ? <StepUpInput input={input} onAnswer={props.onAnswer} /> : null}
      {input.kind === "confirm" ? <ConfirmInput input={input} onAnswer={props.onAnswer} /> : null}
    </section>
  );
}

/** The PIN is typed only in the agent's own page (its origin, not ours); a page at any other address is refused. */
function PinInput(props: { input: Extract<OperationInput, { kind: "pin" }>; agentBase: string }) {
  useLang();
  const [blocked, setBlocked] = useState(false);
  let url: URL | null = null;
  try { url = new URL(props.input.promptUrl); } catch { url = null; }
  if (!url || url.origin !== new URL(props.agentBase).origin) {
    const p = problemOf("REQUEST_INVALID", { reason: "the PIN page is not the agent's own" });
    return <ProblemView problem={p} />;
  }
  const which = props.input.so ? t("verify.soPin") : props.input.newPin ? t("verify.newPin") : t("verify.pin");
  const keyPad = props.input.keyPad === true;
  return (
    <>
      <h2>{keyPad ? t("verify.keyPadTitle") : t("verify.pinTitle", { which })}</h2>
      <p>{keyPad ? t("verify.keyPadExplain") : t("verify.pinExplain")}</p>
      <button type="button" class="primary" data-action="open-pin" onClick={() => {
        const w = window.open(url.href, "ukey-pin", "popup,width=520,height=640");
        setBlocked(!w);
      }}>{keyPad ? t("verify.openKeyPad") : t("verify.openPin")}</button>
      {blocked ? <p class="warn">{t("verify.popupBlocked")} <a href={url.href} target="_blank" rel="noopener">{t("verify.openPinLink")}</a></p> : null}
    </>
  );
}

function IdNumberInput(props: { idType: string; onAnswer: (a: OperationAnswer) => Promise<void> }) {
  useLang();
  const [v, setV] = useState("");
  const [busy, setBusy] = useState(false);
  const typeName = props.idType === "resident-id" ? t("verify.residentId") : props.idType;
  return (
    <form onSubmit={async (e) => { e.preventDefault(); setBusy(true); await props.onAnswer({ idNumber: v.trim() }); setBusy(false); setV(""); }}>
      <h2>{t("verify.idTitle")}</h2>
      <label for="id-number">{t("verify.idLabel", { type: typeName })}</label>
      <input id="id-number" name="id-number" autoComplete="off" required minLength={4} maxLength={40} value={v} onInput={(e) => setV(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled={busy || v.trim().length < 4}>{t("common.continue")}</button>
    </form>
  );
}

function useCountdown(untilIso: string): number {
  const until = Date.parse(untilIso);
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [untilIso]);
  return Number.isFinite(until) ? Math.max(0, Math.ceil((until - now) / 1000)) : 0;
}

function OneTimeCodeInput(props: { input: Extract<OperationInput, { kind: "one-time-code" }>; onAnswer: (a: OperationAnswer) => Promise<void> }) {
  useLang();
  const [code, setCode] = useState("");
  const [busy, setBusy] = useState(false);
  const wait = useCountdown(props.input.resendAfter);
  const ref = useRef<HTMLInputElement>(null);
  useEffect(() => { ref.current?.focus(); }, [props.input.maskedTo]);
  return (
    <form onSubmit={async (e) => { e.preventDefault(); setBusy(true); await props.onAnswer({ code: code.trim() }); setBusy(false); setCode(""); }}>
      <h2>{t("verify.otpTitle")}</h2>
      <p>{t(props.input.channel === "sms" ? "verify.otpSentSms" : "verify.otpSentEmail", { to: props.input.maskedTo })}
        {" "}<span class="hint">{t("verify.otpExpires", { at: dayTime(props.input.expiresAt).slice(11) })}</span></p>
      <label for="otp">{t("verify.otpLabel")}</label>
      <input id="otp" ref={ref} name="one-time-code" inputMode="numeric" autoComplete="one-time-code" required maxLength={8}
        value={code} onInput={(e) => setCode(e.currentTarget.value.replace(/\s/g, ""))} />
      <button type="submit" class="primary" disabled={busy || code.length < 4}>{t("common.continue")}</button>{" "}
      <button type="button" data-action="resend" disabled={wait > 0 || busy} onClick={() => props.onAnswer({ resend: true })}>
        {wait > 0 ? t("verify.resendIn", { n: wait }) : t("verify.resend")}
      </button>
    </form>
  );
}

function StepUpInput(props: { input: Extract<OperationInput, { kind: "step-up" }>; onAnswer: (a: OperationAnswer) => Promise<void> }) {
  useLang();
  const ok = /^https?:\/\//.test(props.input.approvalUrl);
  return (
    <div>
      <h2>{t("verify.stepUpTitle")}</h2>
      <p>{t("verify.stepUpExplain")}</p>
      {ok ? <>
        <QrCode text={props.input.approvalUrl} label={t("verify.stepUpQr")} />
        <p><a class="button" href={props.input.approvalUrl} target="_blank" rel="noopener noreferrer" data-action="step-up-link">{t("verify.stepUpOpen")}</a></p>
      </> : null}
      {props.input.expiresAt ? <p class="hint">{t("verify.stepUpUntil", { at: dayTime(props.input.expiresAt) })}</p> : null}
      <button type="button" class="primary" onClick={() => props.onAnswer({ stepUpDone: true })}>{t("verify.stepUpDone")}</button>
    </div>
  );
}

/** One certificate of a preview: subject as readable fields (the DN only as a tooltip), short serial, validity, algorithm. */
function PreviewCertificate(props: { title: string; which: "current" | "next"; subject: string; serialHex?: string; validity: string; algorithm?: string; profile?: { zh: string; en: string }; notes?: string[] }) {
  useLang();
  const f = subjectFields(props.subject);
  return (
    <section class="preview-cert" data-cert={props.which}>
      <h3>{props.title}</h3>
      <dl>
        {f.name ? <><dt>{t("preview.name")}</dt><dd data-field="name" title={props.subject}><strong>{f.name}</strong></dd></> : null}
        {f.organisation ? <><dt>{t("preview.organisation")}</dt><dd data-field="organisation">{f.organisation}</dd></> : null}
        {f.id ? <><dt>{t("preview.id")}</dt><dd data-field="id">{f.id}</dd></> : null}
        {!f.name && !f.organisation ? <><dt>{t("cert.subject")}</dt><dd data-field="subject">{props.subject}</dd></> : null}
        {props.profile ? <><dt>{t("preview.profile")}</dt><dd data-field="profile">{pick(props.profile)}</dd></> : null}
        {props.serialHex ? <><dt>{t("preview.serialTail")}</dt><dd data-field="serial" title={props.serialHex}><code>{shortSerial(props.serialHex)}</code></dd></> : null}
        <dt>{t("cert.validity")}</dt><dd data-field="validity">{props.validity}</dd>
        {props.algorithm ? <><dt>{t("preview.algorithm")}</dt><dd data-field="algorithm">{keyAlgorithmLabel(props.algorithm)}</dd></> : null}
      </dl>
      {props.notes?.map((n) => <p class="hint">{n}</p>)}
    </section>
  );
}

/** Seed 004 §3.5 / §4.5: the certificate a renewal or download will write, checked before the PIN; one primary button. */
function PreviewInput(props: { preview: CertificatePreview; onAnswer: (a: OperationAnswer) => Promise<void> }) {
  useLang();
  const p = props.preview;
  const [busy, setBusy] = useState(false);
  const renew = p.kind === "renew";
  return (
    <div data-preview={p.kind}>
      <h2>{t(renew ? "preview.renewTitle" : "preview.downloadTitle")}</h2>
      <p>{t("preview.check")}</p>
      <div class="preview-pair">
        {p.current ? <PreviewCertificate title={t("preview.current")} which="current" subject={p.current.subject} serialHex={p.current.serialHex}
          validity={`${day(p.current.notBefore)} — ${day(p.current.notAfter)}`} {...(p.current.algorithm ? { algorithm: p.current.algorithm } : {})} /> : null}
        <PreviewCertificate title={t(renew ? "preview.next" : "preview.authorized")} which="next" subject={p.next.subject}
          validity={t("preview.newValidity", { from: day(p.next.notBefore), to: day(p.next.notAfter) })}
          {...(p.next.algorithm ? { algorithm: p.next.algorithm } : {})} {...(p.next.profile ? { profile: p.next.profile } : {})}
          notes={[...(p.next.algorithm ? [t("preview.newKey")] : []), ...(p.next.pair ? [t("preview.pair")] : [])]} />
      </div>
      <p class="actions">
        <button type="button" class="primary" data-action="confirm-yes" disabled={busy} onClick={async () => { setBusy(true); await props.onAnswer({ confirm: true }); setBusy(false); }}>
          {t(renew ? "preview.confirmRenew" : "preview.confirmDownload")}</button>{" "}
        <button type="button" data-action="confirm-no" disabled={busy} onClick={() => props.onAnswer({ confirm: false })}>{t("common.cancel")}</button>
      </p>
    </div>
  );
}

function ConfirmInput(props: { input: Extract<OperationInput, { kind: "confirm" }>; onAnswer: (a: OperationAnswer) => Promise<void> }) {
  useLang();
  if (props.input.preview) return <PreviewInput preview={props.input.preview} onAnswer={props.onAnswer} />;
  return (
    <div>
      <h2>{props.input.question}</h2>
      {props.input.consequences.length ? <ul class="consequences">{props.input.consequences.map((c) => <li>{c}</li>)}</ul> : null}
      <button type="button" class="danger" data-action="confirm-yes" onClick={() => props.onAnswer({ confirm: true })}>{t("common.yes")}</button>{" "}
      <button type="button" data-action="confirm-no" onClick={() => props.onAnswer({ confirm: false })}>{t("common.no")}</button>
    </div>
  );
}

/** One issued certificate; `field` prefixes its data-field names (the encryption half of a pair: "encryption-"). */
function CertificateResult(props: { c: IssuedCertificate; field?: string }) {
  useLang();
  const f = props.field ?? "";
  return (
    <dl class="result-cert">
      <dt>{t("cert.name")}</dt><dd data-field={`${f}name`}><strong>{subjectName(props.c.subject)}</strong></dd>
      <dt>{t("cert.validity")}</dt><dd data-field={`${f}validity`}>{day(props.c.notBefore)} — {day(props.c.notAfter)}</dd>
      <dt>{t("cert.subject")}</dt><dd class="hint" data-field={`${f}subject`}>{props.c.subject}</dd>
      <dt>{t("cert.serial")}</dt><dd><small><code data-field={`${f}serial`}>{props.c.serialHex}</code></small></dd>
    </dl>
  );
}

/** A pair's encryption certificate on the result page, under its own heading (it renews with the signing one). */
function EncryptionResult(props: { c: IssuedCertificate | undefined }) {
  useLang();
  if (!props.c) return null;
  return <div data-result-half="encryption"><h3>{t("result.encryptionCertificate")}</h3><CertificateResult c={props.c} field="encryption-" /></div>;
}

function ResultView(props: { kind: OperationView["kind"]; result: unknown }) {
  useLang();
  const r = (props.result ?? {}) as Record<string, unknown>;
  switch (props.kind) {
    case "renew": {
      const rr = r as unknown as RenewResult;
      return (
        <section class="result ok" role="status" data-result="renew">
          <h2>{t("result.renewed")}</h2>
          {rr.certificate ? <CertificateResult c={rr.certificate} /> : null}
          <EncryptionResult c={rr.encryptionCertificate} />
          {rr.resumed ? <p class="hint">{t("result.resumed")}</p> : null}
          {rr.removed ? <p class="hint">{t("result.removed", { n: rr.removed })}</p> : null}
          <p><a class="button" href="#/">{t("op.backToStatus")}</a></p>
        </section>
      );
    }
    case "download": {
      const c = r.certificate as IssuedCertificate | undefined;
      return <section class="result ok" role="status" data-result="download"><h2>{t("result.downloaded")}</h2>{c ? <CertificateResult c={c} /> : null}
        <EncryptionResult c={r.encryptionCertificate as IssuedCertificate | undefined} />
        <p><a class="button" href="#/">{t("op.backToStatus")}</a></p></section>;
    }
    case "initialise": {
      const token = r.token as { serial?: string; label?: string } | undefined;
      return (
        <section class="result ok" role="status" data-result="initialise">
          <h2>{t("result.initialised")}</h2>
          <p>{t("result.initialisedNext")}</p>
          <p><a class="button primary" href={`#/download?token=${encodeURIComponent(token?.serial ?? "")}`}>{t("nav.download")}</a></p>
        </section>
      );
    }
    case "clean-up":
      return <section class="result ok" role="status" data-result="clean-up"><h2>{t("result.removed", { n: Number(r.removed ?? 0) })}</h2><p><a class="button" href="#/">{t("op.backToStatus")}</a></p></section>;
    case "doctor":
      return <DoctorChecks checks={(Array.isArray(props.result) ? props.result : (r.checks as DoctorCheck[] | undefined) ?? []) as DoctorCheck[]} />;
    default:
      return <section class="result ok" role="status"><h2>{t("result.done")}</h2><p><a class="button" href="#/">{t("op.backToStatus")}</a></p></section>;
  }
}

/** The agent's doctor: each check with what was found and, on failure, the remedy of its code. */
export function DoctorChecks(props: { checks: DoctorCheck[] }) {
  useLang();
  return (
    <section class="doctor" data-result="doctor">
      <h2>{t("diag.results")}</h2>
      <ul class="checks">
        {props.checks.map((c) => (
          <li class={c.id === "advice" ? "advice" : c.ok ? "ok" : "bad"} data-check={c.id}>
            <strong>{c.id === "advice" ? "•" : c.ok ? "✓" : "✗"} {t(`diag.check.${c.id}`)}</strong> — {pick({ zh: c.zh, en: c.en })}
            {!c.ok && c.code ? <p class="hint">{pick(problemOf(c.code).remedy)} <a href={`#/help/${c.code}`}>{c.code}</a></p> : null}
          </li>
        ))}
      </ul>
    </section>
  );
}
