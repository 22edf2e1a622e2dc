import { useEffect, useState } from "preact/hooks";
import { t, useLang } from "../shared/i18n.js";
import { asProblem, problemOf, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";
import { setAgentUrl, type AgentClient } from "./agent-client.js";
import { loopbackPermissionStatus } from "./agent-downloads.js";
import { detectOs, primaryInstaller, sizeText, type Downloads, type HolderOs } from "./installer-choice.js";

/** The three steps' pictures: a download arrow, an installer box, the browser window. */
const stepIcons = [
  <svg viewBox="0 0 24 24" width="40" height="40" aria-hidden="true"><path fill="currentColor" d="M11 3h2v9.6l3.3-3.3 1.4 1.4L12 16.4l-5.7-5.7 1.4-1.4 3.3 3.3Zm-7 15h16v2H4Z" /></svg>,
  <svg viewBox="0 0 24 24" width="40" height="40" aria-hidden="true"><path fill="currentColor" d="M4 4h16v4H4Zm1 5h14v11H5Zm5 3v2h4v-2Z" /></svg>,
  <svg viewBox="0 0 24 24" width="40" height="40" aria-hidden="true"><path fill="currentColor" d="M3 4h18v16H3Zm2 4v10h14V8Zm1-3v2h2V5Zm3 0v2h2V5Zm1 7 5 3-5 3Z" /></svg>,
];

const osName = (os: HolderOs) => (os === "mobile" ? "" : t(`install.for.${os}`));

/**
 * The installer for this computer from what the server publishes: one
 * primary button (name, version, size, SHA-256 in small print), the other
 * systems' files behind a link, or a plain word when there is nothing to
 * download. Used for a missing agent and for an outdated one.
 */
export function InstallerOffer(props: { downloads: Downloads | null }) {
  useLang();
  const [others, setOthers] = useState(false);
  const d = props.downloads;
  if (!d) return <Busy />;
  if (d.kind === "none") {
    return (
      <section class="card notice" data-downloads="none">
        <h2>{t("install.none.title")}</h2>
        <p>{t("install.none.text")}</p>
      </section>
    );
  }
  if (d.kind === "unavailable") return <p class="card notice" data-downloads="unavailable">{t("install.unavailable")}</p>;
  const os = detectOs(navigator.userAgent);
  const primary = primaryInstaller(d.files, os);
  const rest = d.files.filter((f) => f !== primary);
  return (
    <section class="installer" data-downloads="published" data-os={os}>
      {primary ? (
        <div class="card offer">
          <a class="button primary big" href={`/downloads/${encodeURIComponent(primary.name)}`} download={primary.name} data-file={primary.name}>
            {t("install.button", { os: osName(os) })}
          </a>
          <p class="facts">{t("install.facts", { version: primary.version, size: sizeText(primary.size), name: primary.name })}</p>
          <p class="checksum"><small>{t("install.sha256")} <code data-field="sha256">{primary.sha256}</code></small></p>
        </div>
      ) : <p class="card notice" data-no-installer={os}>{os === "mobile" ? t("install.mobile") : t("install.noneForOs", { os: osName(os) })}</p>}
      {rest.length ? (
        <>
          <p><button type="button" class="link" aria-expanded={others} onClick={() => setOthers(!others)}>{t("install.others")}</button></p>
          {others ? (
            <ul class="other-files">
              {rest.map((f) => (
                <li data-file={f.name}>
                  <a href={`/downloads/${encodeURIComponent(f.name)}`} download={f.name}>{f.name}</a>{" "}
                  <span class="hint">{f.platform} · {f.version} · {sizeText(f.size)}</span>
                  <br /><small>{t("install.sha256")} <code>{f.sha256}</code></small>
                </li>
              ))}
            </ul>
          ) : null}
        </>
      ) : null}
    </section>
  );
}

/** Download, install, come back: numbered, with a picture each; the page finds the agent by itself. */
function InstallSteps() {
  useLang();
  const steps: [string, string][] = [
    [t("install.step1"), t("install.step1.text")], [t("install.step2"), t("install.step2.text")], [t("install.step3"), t("install.step3.text")],
  ];
  return (
    <>
      <h2>{t("install.title")}</h2>
      <ol class="install-steps">
        {steps.map(([title, text], i) => (
          <li><span class="pic">{stepIcons[i]}</span><div><strong><span class="n">{i + 1}</span> {title}</strong><p>{text}</p></div></li>
        ))}
      </ol>
      <p class="busy waiting" role="status" aria-live="polite"><span class="spinner" aria-hidden="true" /> {t("install.waiting")}</p>
      <p class="hint">{t("install.already")}</p>
    </>
  );
}

/**
 * No agent answered: a download page. The installer for the holder's OS
 * (detected) from the server's manifest, three numbered steps, and the
 * page moves on by itself once the agent answers (the App polls). The
 * command line and another port only under "advanced". No plug-in, no
 * security setting.
 */
export function AgentAbsentPage(props: { problem: Problem; agentBase: string; downloads: Downloads | null; onRetry: () => void }) {
  useLang();
  const [port, setPort] = useState(new URL(props.agentBase).port || "24817");
  const [portError, setPortError] = useState(false);
  return (
    <div class="page" data-page="agent-absent" data-code={props.problem.code}>
      <h1>{t("agent.absent.title")}</h1>
      <p>{t("agent.absent.noPlugin")}</p>
      <InstallerOffer downloads={props.downloads} />
      <InstallSteps />
      <details class="advanced">
        <summary>{t("install.advanced")}</summary>
        <ProblemView problem={props.problem} helpHref={`#/help/${props.problem.code}`} />
        <p>{t("install.advanced.command")}</p>
        <pre><code data-field="command">ukey agent start --server {location.origin}</code></pre>
        <p><button type="button" onClick={props.onRetry}>{t("agent.checkAgain")}</button></p>
        <form onSubmit={(ev) => {
          ev.preventDefault();
          if (!/^\d{2,5}$/.test(port) || !setAgentUrl(`http://127.0.0.1:${port}`)) { setPortError(true); return; }
          location.reload();
        }}>
          <p>{t("agent.otherPort")}</p>
          <label>{t("agent.port")} <input inputMode="numeric" value={port} onInput={(e) => { setPort(e.currentTarget.value.trim()); setPortError(false); }} aria-invalid={portError} /></label>
          <button type="submit">{t("common.save")}</button>
          {portError ? <p class="error" role="alert">{t("agent.portInvalid")}</p> : null}
        </form>
      </details>
    </div>
  );
}

/**
 * Before the first request to 127.0.0.1 where the browser will ask for it
 * (Chrome's local network access): what the question will look like and
 * to press Allow. Nothing reaches for the agent until the holder continues.
 */
export function LocalNetworkExplainPage(props: { onContinue: () => void }) {
  useLang();
  return (
    <div class="page" data-page="lna-explain">
      <h1>{t("lna.title")}</h1>
      <p>{t("lna.explain")}</p>
      <figure class="lna-mock">
        <div class="lna-box" role="img" aria-label={`${t("lna.mock.wants", { host: location.host })} ${t("lna.mock.what")}: ${t("lna.mock.allow")}`}>
          <p><strong>{t("lna.mock.wants", { host: location.host })}</strong></p>
          <p class="what">{t("lna.mock.what")}</p>
          <p class="btns"><span class="fake">{t("lna.mock.block")}</span> <span class="fake allow">{t("lna.mock.allow")}</span></p>
        </div>
        <figcaption class="hint">{t("lna.mock.caption")}</figcaption>
      </figure>
      <p><button type="button" class="primary" onClick={props.onContinue}>{t("common.continue")}</button></p>
    </div>
  );
}

/**
 * The browser refused this site the local network: how to allow it again
 * in the site settings. The page checks again by itself when the
 * permission changes, or when the holder presses the button.
 */
export function LocalNetworkBlockedPage(props: { onRetry: () => void }) {
  useLang();
  useEffect(() => {
    let status: PermissionStatus | null = null;
    const changed = () => { if (status?.state !== "denied") props.onRetry(); };
    void loopbackPermissionStatus().then((s) => { status = s; s?.addEventListener("change", changed); });
    return () => status?.removeEventListener("change", changed);
  }, []);
  const problem = problemOf("LOCAL_NETWORK_BLOCKED");
  return (
    <div class="page" data-page="lna-blocked">
      <h1>{t("lna.denied.title")}</h1>
      <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} />
      <ol class="steps-list">
        <li>{t("lna.denied.1")}</li>
        <li>{t("lna.denied.2")}</li>
        <li>{t("lna.denied.3")}</li>
      </ol>
      <p><button type="button" class="primary" onClick={props.onRetry}>{t("lna.denied.retry")}</button></p>
    </div>
  );
}

/** The agent runs but does not serve this site: its owner must add this origin (and then pair). */
export function NotAllowedPage(props: { problem: Problem; onRetry: () => void }) {
  useLang();
  return (
    <div class="page" data-page="not-allowed">
      <h1>{t("agent.notAllowed.title")}</h1>
      <ProblemView problem={props.problem} helpHref={`#/help/${props.problem.code}`} />
      <p>{t("agent.notAllowed.how")} <code>ukey agent start --origin {location.origin}</code></p>
      <p><button type="button" class="primary" onClick={props.onRetry}>{t("agent.checkAgain")}</button></p>
    </div>
  );
}

/** An agent older than this portal needs, or than the version the server publishes: the same download button. */
export function AgentOutdatedPage(props: { problem: Problem; downloads: Downloads | null; onRetry: () => void }) {
  useLang();
  return (
    <div class="page" data-page="agent-outdated">
      <h1>{t("agent.outdated.title")}</h1>
      <ProblemView problem={props.problem} helpHref={`#/help/${props.problem.code}`} />
      <InstallerOffer downloads={props.downloads} />
      <p class="busy waiting" role="status" aria-live="polite"><span class="spinner" aria-hidden="true" /> {t("install.waitingUpgrade")}</p>
      <p><button type="button" onClick={props.onRetry}>{t("agent.checkAgainUpgraded")}</button></p>
    </div>
  );
}

/**
 * Pairing: the agent shows a 6-digit code in its own window or terminal
 * (never in an answer to the page); the holder types it here. Wrong codes
 * and expiry get their catalogue pages; a new pairing can start at once.
 */
export function PairingPage(props: { agent: AgentClient; onPaired: () => void }) {
  useLang();
  const [pairing, setPairing] = useState<{ id: string; expiresAt: string } | null>(null);
  const [code, setCode] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const start = async () => {
    setProblem(null); setCode(""); setBusy(true);
    try { setPairing(await props.agent.startPairing()); } catch (e) { setProblem(asProblem(e, "AGENT_NOT_RUNNING")); } finally { setBusy(false); }
  };
  useEffect(() => { void start(); }, []);

  const confirm = async (ev: Event) => {
    ev.preventDefault();
    if (!pairing) return;
    if (!/^\d{6}$/.test(code)) { setProblem(problemOf("REQUEST_INVALID", { reason: t("pair.sixDigits") })); return; }
    setBusy(true); setProblem(null);
    try {
      await props.agent.confirmPairing(pairing.id, code);
      props.onPaired();
    } catch (e) {
      const p = asProblem(e, "AGENT_NOT_RUNNING");
      setProblem(p);
      if (["PAIRING_ENDED", "PAIRING_EXPIRED"].includes(p.code)) setPairing(null);
    } finally { setBusy(false); }
  };

  return (
    <div class="page" data-page="pairing">
      <Steps current={1} />
      <h1>{t("pair.title")}</h1>
      <p>{t("pair.explain", { origin: location.origin })}</p>
      {problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}
      {pairing ? (
        <form onSubmit={confirm} class="card">
          <label for="pair-code">{t("pair.codeLabel")}</label>
          <input id="pair-code" name="pairing-code" inputMode="numeric" autoComplete="off" maxLength={6} pattern="\d{6}" required
            value={code} onInput={(e) => setCode(e.currentTarget.value.replace(/\D/g, ""))} aria-describedby="pair-hint" />
          <p id="pair-hint" class="hint">{t("pair.hint")}</p>
          <button type="submit" class="primary" disabled={busy}>{t("pair.confirm")}</button>
        </form>
      ) : busy ? <Busy /> : <p><button type="button" class="primary" onClick={start}>{t("pair.again")}</button></p>}
    </div>
  );
}

/** The renewal wizard's steps, as seed 000 numbers them, with the current one marked. */
export function Steps(props: { current: number; failed?: boolean }) {
  useLang();
  const names = [t("step.find"), t("step.pair"), t("step.choose"), t("step.verify"), t("step.install"), t("step.result")];
  return (
    <ol class="wizard-steps" aria-label={t("step.label")} data-failed={props.failed ? "true" : undefined}>
      {names.map((n, i) => (
        <li class={i < props.current ? "done" : i === props.current ? (props.failed ? "current failed" : "current") : ""} aria-current={i === props.current ? "step" : undefined}>
          <span class="n">{i + 1}</span> {n}
        </li>
      ))}
    </ol>
  );
}
