import { useEffect, useState } from "preact/hooks";
import { day, dayTime, subjectName } from "../shared/format.js";
import { pick, t, useLang } from "../shared/i18n.js";
import { fetchJson } from "../shared/http.js";
import { asProblem, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";
import { startOperation } from "./operation-page.js";
import { useTokens, type PageCtx } from "./status-page.js";

/** Self-service re-download's API (docs/enrolment.md). */
const REDOWNLOAD_API = "/api/v1/redownload";

interface Started { challengeId: string; expiresAt: string; resendAt: string; sentTo: string }
interface Authorization {
  referenceNumber: string; authorizationCode: string; expiresAt: string;
  certificate: { serial: string; subjectDn: string; notAfter: string; profileId: string; profileName: { "zh-CN": string; en: string } | null };
}

/** The page's own three steps, numbered as the holder goes. */
function RedownloadSteps(props: { current: 0 | 1 | 2 }) {
  useLang();
  const names = [t("redownload.step.identity"), t("redownload.step.sms"), t("redownload.step.download")];
  return (
    <ol class="wizard-steps" aria-label={t("step.label")}>
      {names.map((n, i) => (
        <li class={i < props.current ? "done" : i === props.current ? "current" : ""} aria-current={i === props.current ? "step" : undefined}>
          <span class="n">{i + 1}</span> {n}
        </li>
      ))}
    </ol>
  );
}

/**
 * Seed 000's 证书下载 after a key was initialised: 1 customer number and ID
 * number, 2 the SMS code to the phone on record, 3 the key (and the
 * certificate, when several may be downloaded again), then the agent's
 * download with the two codes the server answered, as the two-code page
 * does. The codes stay in this page's memory; the PIN is asked by the agent.
 */
export function RedownloadPage(props: PageCtx & { query: URLSearchParams }) {
  useLang();
  const { tokens, problem: tokenProblem, reload } = useTokens(props);
  const [holderId, setHolderId] = useState("");
  const [idNumber, setIdNumber] = useState("");
  const [started, setStarted] = useState<Started | null>(null);
  const [code, setCode] = useState("");
  const [auths, setAuths] = useState<Authorization[] | null>(null);
  const [token, setToken] = useState<string>(props.query.get("token") ?? "");
  const [chosenCert, setChosenCert] = useState<string>("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const [now, setNow] = useState(Date.now());
  useEffect(() => { const i = setInterval(() => setNow(Date.now()), 1000); return () => clearInterval(i); }, []);

  /** Runs a step; `agent`: it talks to the agent, whose lost pairing sends the page to pairing (the server's 401s do not). */
  const run = async (f: () => Promise<void>, agent = false) => {
    setBusy(true); setProblem(null);
    try { await f(); } catch (x) { if (!(agent && props.lostPairing(x))) setProblem(asProblem(x, agent ? "AGENT_NOT_RUNNING" : "SERVER_UNREACHABLE")); } finally { setBusy(false); }
  };
  const send = () => run(async () => {
    setStarted(await fetchJson<Started>(REDOWNLOAD_API, { method: "POST", json: { holderId: holderId.trim(), idNumber: idNumber.trim() } }));
    setCode("");
  });
  const wait = started ? Math.max(0, Math.ceil((Date.parse(started.resendAt) - now) / 1000)) : 0;
  const step = auths ? 2 : started ? 1 : 0;

  let body;
  if (step === 0) {
    body = (
      <form class="card" data-step="identity" onSubmit={(e) => { e.preventDefault(); void send(); }}>
        <label for="rd-holder">{t("org.customerNumber")}</label>
        <input id="rd-holder" name="holderId" autoComplete="username" required maxLength={64} value={holderId} onInput={(e) => setHolderId(e.currentTarget.value)} />
        <label for="rd-id">{t("redownload.idNumber")}</label>
        <input id="rd-id" name="idNumber" autoComplete="off" required maxLength={64} value={idNumber} onInput={(e) => setIdNumber(e.currentTarget.value)} />
        <button type="submit" class="primary" disabled={busy || !holderId.trim() || !idNumber.trim()}>{t("redownload.send")}</button>
      </form>
    );
  } else if (step === 1 && started) {
    body = (
      <form class="card" data-step="sms" onSubmit={(e) => {
        e.preventDefault();
        void run(async () => {
          const r = await fetchJson<{ authorizations: Authorization[] }>(`${REDOWNLOAD_API}/verify`, { method: "POST", json: { challengeId: started.challengeId, code: code.trim() } });
          setAuths(r.authorizations);
          setChosenCert(r.authorizations.length === 1 ? r.authorizations[0]!.certificate.serial : "");
        });
      }}>
        <p data-text="sent-to">{t("redownload.sentTo", { phone: started.sentTo })} <span class="hint">{t("verify.otpExpires", { at: dayTime(started.expiresAt).slice(11) })}</span></p>
        <label for="rd-code">{t("verify.otpLabel")}</label>
        <input id="rd-code" name="code" inputMode="numeric" autoComplete="one-time-code" required maxLength={16} value={code} onInput={(e) => setCode(e.currentTarget.value)} />
        <p class="hint">{t("redownload.notReceived")}</p>
        <button type="submit" class="primary" disabled={busy || !code.trim()}>{t("redownload.verify")}</button>{" "}
        <button type="button" disabled={busy || wait > 0} onClick={() => void send()}>{wait > 0 ? t("verify.resendIn", { n: wait }) : t("verify.resend")}</button>{" "}
        <button type="button" onClick={() => { setStarted(null); setProblem(null); }}>{t("redownload.restart")}</button>
      </form>
    );
  } else if (auths) {
    const chosen = token || (tokens && tokens.length === 1 ? tokens[0]!.token.serial : "");
    const auth = auths.find((a) => a.certificate.serial === chosenCert);
    body = (
      <form class="card" data-step="download" onSubmit={(e) => {
        e.preventDefault();
        if (!auth) return;
        void run(() => startOperation(props, { kind: "download", tokenSerial: chosen, referenceNumber: auth.referenceNumber, authorizationCode: auth.authorizationCode }), true);
      }}>
        <fieldset class="choices">
          <legend>{t("redownload.choose")}</legend>
          {auths.map((a) => (
            <label class="choice" data-serial={a.certificate.serial}>
              <input type="radio" name="cert" value={a.certificate.serial} checked={a.certificate.serial === chosenCert} onChange={() => setChosenCert(a.certificate.serial)} />
              <span><strong>{subjectName(a.certificate.subjectDn)}</strong>{a.certificate.profileName ? ` · ${pick(a.certificate.profileName)}` : ""} · {t("redownload.validUntil", { date: day(a.certificate.notAfter) })}</span>
            </label>
          ))}
        </fieldset>
        {auth ? <p class="hint" data-text="authorized-until">{t("redownload.authorizedUntil", { at: dayTime(auth.expiresAt) })} {t("redownload.willReplace")}</p> : null}
        {tokenProblem ? <><ProblemView problem={tokenProblem} helpHref={`#/help/${tokenProblem.code}`} /><button type="button" onClick={reload}>{t("common.retry")}</button></>
          : !tokens ? <Busy label={t("status.reading")} />
          : tokens.length === 0 ? <p>{t("redownload.noKey")} <button type="button" onClick={reload}>{t("status.refresh")}</button></p>
          : (
            <>
              <label for="rd-token">{t("download.key")}</label>
              <select id="rd-token" required value={chosen} onChange={(e) => setToken(e.currentTarget.value)}>
                <option value="" disabled>{t("download.chooseKey")}</option>
                {tokens.map((tk) => <option value={tk.token.serial}>{tk.token.label} ({tk.token.serial})</option>)}
              </select>
            </>
          )}
        <button type="submit" class="primary" disabled={busy || !chosen || !auth}>{t("download.start")}</button>
      </form>
    );
  }

  return (
    <div class="page" data-page="redownload">
      <RedownloadSteps current={step} />
      <h1>{t("redownload.title")}</h1>
      <p>{t("redownload.explain")}</p>
      {problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}
      {body}
    </div>
  );
}
