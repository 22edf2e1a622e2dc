import { useEffect, useState } from "preact/hooks";
import { t, useLang } from "../shared/i18n.js";
import { asProblem, problemOf, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";
import { setAgentUrl, type AgentClient } from "./agent-client.js";

type Os = "windows" | "macos" | "linux";

function guessOs(): Os {
  const ua = navigator.userAgent;
  if (/Windows/i.test(ua)) return "windows";
  if (/Mac OS X|Macintosh/i.test(ua)) return "macos";
  return "linux";
}

/**
 * No agent answered: what that means, how to install and start it on each
 * OS (the holder's OS first), and where to point the page when the agent
 * listens on another port. No plug-in, no security setting.
 */
export function AgentAbsentPage(props: { problem: Problem; agentBase: string; onRetry: () => void }) {
  useLang();
  const [os, setOs] = useState<Os>(guessOs());
  const [port, setPort] = useState(new URL(props.agentBase).port || "24817");
  const [portError, setPortError] = useState(false);
  const origin = location.origin;
  const steps: Record<Os, string[]> = {
    windows: [t("install.windows.1"), t("install.windows.2"), t("install.windows.3")],
    macos: [t("install.macos.1"), t("install.macos.2"), t("install.macos.3")],
    linux: [t("install.linux.1"), t("install.linux.2"), t("install.linux.3")],
  };
  return (
    <div class="page" data-page="agent-absent">
      <h1>{t("agent.absent.title")}</h1>
      <ProblemView problem={props.problem} helpHref={`#/help/${props.problem.code}`} />
      <p>{t("agent.absent.noPlugin")}</p>
      <h2>{t("install.title")}</h2>
      <div role="tablist" aria-label={t("install.os")} class="tabs">
        {(["windows", "macos", "linux"] as const).map((o) => (
          <button type="button" role="tab" aria-selected={os === o} onClick={() => setOs(o)}>{t(`install.${o}`)}</button>
        ))}
      </div>
      <div role="tabpanel"><ol class="steps-list">
        {steps[os].map((s) => <li>{s}</li>)}
        <li>{t("install.start")} <code>ukey agent start --server {origin}</code></li>
      </ol></div>
      <p><button type="button" class="primary" onClick={props.onRetry}>{t("agent.checkAgain")}</button></p>
      <details>
        <summary>{t("agent.otherPort")}</summary>
        <form onSubmit={(ev) => {
          ev.preventDefault();
          if (!/^\d{2,5}$/.test(port) || !setAgentUrl(`http://127.0.0.1:${port}`)) { setPortError(true); return; }
          location.reload();
        }}>
          <label>{t("agent.port")} <input inputMode="numeric" value={port} onInput={(e) => { setPort(e.currentTarget.value.trim()); setPortError(false); }} aria-invalid={portError} /></label>
          <button type="submit">{t("common.save")}</button>
          {portError ? <p class="error" role="alert">{t("agent.portInvalid")}</p> : null}
        </form>
      </details>
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

/** An agent too old for this portal. */
export function AgentOutdatedPage(props: { problem: Problem; onRetry: () => void }) {
  useLang();
  return (
    <div class="page" data-page="agent-outdated">
      <h1>{t("agent.outdated.title")}</h1>
      <ProblemView problem={props.problem} helpHref={`#/help/${props.problem.code}`} />
      <p><button type="button" class="primary" onClick={props.onRetry}>{t("agent.checkAgain")}</button></p>
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
