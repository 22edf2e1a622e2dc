import { useEffect, useState } from "preact/hooks";
import { subjectName } from "../shared/format.js";
import { t, useLang } from "../shared/i18n.js";
import { asProblem, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";
import type { HelloResponse } from "./agent-client.js";
import { Steps } from "./agent-pages.js";
import { StartButton, startOperation } from "./operation-page.js";
import { knownTokenSerial } from "./org-page.js";
import { CertificateCard, ReadCertificates, renewable, stateWords, useTokens, type PageCtx } from "./status-page.js";

/** Wizard step 3: choose the key and the certificate to renew (preselected when there is one). */
export function RenewChoosePage(props: PageCtx & { query: URLSearchParams }) {
  useLang();
  const { tokens, problem, reload } = useTokens(props);
  const [choice, setChoice] = useState<string | null>(null);
  if (problem) return <div class="page"><ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /><button type="button" onClick={reload}>{t("common.retry")}</button></div>;
  if (!tokens) return <Busy label={t("status.reading")} />;
  const options = tokens.flatMap((tk) => tk.certificates.map((c) => ({ tk, c, key: `${tk.token.serial}/${c.certificate.serialHex}` })));
  const wanted = `${props.query.get("token") ?? ""}/${props.query.get("cert") ?? ""}`;
  const open = options.filter((o) => renewable(o.c));
  const selected = choice ?? (options.some((o) => o.key === wanted) ? wanted : open.length === 1 ? open[0]!.key : null);
  const sel = options.find((o) => o.key === selected);
  const hidden = tokens.filter((tk) => tk.certificatesHidden);
  const back = `#/renew${props.query.toString() ? `?${props.query.toString()}` : ""}`;
  return (
    <div class="page" data-page="renew">
      <Steps current={2} />
      <h1>{t("renew.title")}</h1>
      {hidden.map((tk) => <ReadCertificates ctx={props} tokenSerial={tk.token.serial} returnTo={back} />)}
      {options.length === 0 && hidden.length === 0 ? <p>{t("status.noKey")} <button type="button" onClick={reload}>{t("status.refresh")}</button></p> : options.length === 0 ? null : (
        <fieldset class="choices">
          <legend>{t("renew.choose")}</legend>
          {options.map((o) => {
            const w = stateWords(o.c);
            return (
              <label class="choice">
                <input type="radio" name="cert" value={o.key} checked={o.key === selected} onChange={() => setChoice(o.key)} />
                <span><strong>{subjectName(o.c.certificate.subject)}</strong> · {o.tk.token.label} · <span class={w.cls}>{w.text}</span></span>
              </label>
            );
          })}
        </fieldset>
      )}
      {sel ? (
        <>
          <CertificateCard c={sel.c} tokenSerial={sel.tk.token.serial} noAction />
          {sel.c.state === "on-hold" ? <p><a class="button" href="#/">{t("op.backToStatus")}</a></p> : <>
            {renewable(sel.c) ? null : <p class="warn" role="note">{t("renew.notOpen")}</p>}
            <p>
              <StartButton ctx={props} primary label={t("renew.start")}
                request={{ kind: "renew", tokenSerial: sel.tk.token.serial, certSerialHex: sel.c.certificate.serialHex }} />
            </p>
          </>}
        </>
      ) : null}
    </div>
  );
}

/** Download with two codes: the reference number and the authorization code from the institution. */
export function DownloadPage(props: PageCtx & { query: URLSearchParams }) {
  useLang();
  const { tokens, problem, reload } = useTokens(props);
  const [token, setToken] = useState<string>(props.query.get("token") ?? "");
  const [ref, setRef] = useState("");
  const [code, setCode] = useState("");
  const [err, setErr] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  if (problem) return <div class="page"><ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /><button type="button" onClick={reload}>{t("common.retry")}</button></div>;
  if (!tokens) return <Busy label={t("status.reading")} />;
  const chosen = token || (tokens.length === 1 ? tokens[0]!.token.serial : "");
  return (
    <div class="page" data-page="download">
      <h1>{t("download.title")}</h1>
      <p>{t("download.explain")}</p>
      {err ? <ProblemView problem={err} helpHref={`#/help/${err.code}`} /> : null}
      <form class="card" onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true); setErr(null);
        try {
          await startOperation(props, { kind: "download", tokenSerial: chosen, referenceNumber: ref.trim(), authorizationCode: code.trim() });
        } catch (x) { if (!props.lostPairing(x)) setErr(asProblem(x, "AGENT_NOT_RUNNING")); } finally { setBusy(false); }
      }}>
        <label for="dl-token">{t("download.key")}</label>
        <select id="dl-token" required value={chosen} onChange={(e) => setToken(e.currentTarget.value)}>
          <option value="" disabled>{t("download.chooseKey")}</option>
          {tokens.map((tk) => <option value={tk.token.serial}>{tk.token.label} ({tk.token.serial})</option>)}
        </select>
        <label for="dl-ref">{t("download.reference")}</label>
        <input id="dl-ref" name="reference-number" autoComplete="off" required maxLength={32} value={ref} onInput={(e) => setRef(e.currentTarget.value)} />
        <label for="dl-code">{t("download.code")}</label>
        <input id="dl-code" name="authorization-code" autoComplete="off" required maxLength={64} value={code} onInput={(e) => setCode(e.currentTarget.value)} />
        <p class="hint">{t("download.codesHint")}</p>
        <button type="submit" class="primary" disabled={busy || !chosen || !ref.trim() || !code.trim()}>{t("download.start")}</button>
      </form>
    </div>
  );
}

/** Initialise a key (wipe, new PIN), then download again: for a forgotten PIN or a key that is full or broken. */
export function InitialisePage(props: PageCtx & { query: URLSearchParams }) {
  useLang();
  const { tokens, problem, reload } = useTokens(props);
  const [token, setToken] = useState<string>(props.query.get("token") ?? "");
  const [label, setLabel] = useState("");
  if (problem) return <div class="page"><ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /><button type="button" onClick={reload}>{t("common.retry")}</button></div>;
  if (!tokens) return <Busy label={t("status.reading")} />;
  const chosen = token || (tokens.length === 1 ? tokens[0]!.token.serial : "");
  return (
    <div class="page" data-page="initialise">
      <h1>{t("init.title")}</h1>
      <p class="warn" role="note">{t("init.warning")}</p>
      <p>{t("init.explain")}</p>
      <div class="card">
        <label for="in-token">{t("download.key")}</label>
        <select id="in-token" value={chosen} onChange={(e) => setToken(e.currentTarget.value)}>
          <option value="" disabled>{t("download.chooseKey")}</option>
          {tokens.map((tk) => <option value={tk.token.serial}>{tk.token.label} ({tk.token.serial})</option>)}
        </select>
        <label for="in-label">{t("init.label")}</label>
        <input id="in-label" maxLength={32} value={label} onInput={(e) => setLabel(e.currentTarget.value)} />
        <p><StartButton ctx={props} label={t("init.start")} disabled={!chosen}
          request={{ kind: "initialise", tokenSerial: chosen, ...(label.trim() ? { label: label.trim() } : {}) }} /></p>
      </div>
    </div>
  );
}

/** The agent's doctor, and where the page finds the agent. */
export function DiagnosticsPage(props: PageCtx & { hello?: HelloResponse }) {
  useLang();
  // A signed-in holder's key as the server recorded it: the doctor names its vendor and advice when no key is seen.
  const [known, setKnown] = useState<string | undefined>(undefined);
  useEffect(() => { void knownTokenSerial().then(setKnown); }, []);
  return (
    <div class="page" data-page="diagnostics">
      <h1>{t("diag.title")}</h1>
      <dl>
        <dt>{t("diag.agentAt")}</dt><dd><code>{props.agent.base}</code></dd>
        <dt>{t("diag.agentVersion")}</dt><dd>{props.hello?.version ?? "—"} (protocol {props.hello?.protocol ?? "—"})</dd>
        <dt>{t("diag.site")}</dt><dd><code>{location.origin}</code></dd>
        <dt>{t("diag.browser")}</dt><dd>{navigator.userAgent}</dd>
      </dl>
      <p>{t("diag.explain")}</p>
      <StartButton ctx={props} primary label={t("diag.run")} request={{ kind: "doctor", ...(known ? { knownSerial: known } : {}) }} />
    </div>
  );
}
