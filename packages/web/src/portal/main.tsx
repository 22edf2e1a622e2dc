import { render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import "../shared/styles.css";
import { t, useLang } from "../shared/i18n.js";
import { asProblem, problemOf, type Problem } from "../shared/problem.js";
import { Busy, LangSwitch, ProblemView, parseHash } from "../shared/ui.js";
import { AGENT_PROTOCOL, AgentClient, MIN_AGENT_VERSION, needsPairing, versionBelow, type HelloResponse } from "./agent-client.js";
import { loadDownloads, loopbackPermission } from "./agent-downloads.js";
import type { Downloads } from "./installer-choice.js";
import { AgentAbsentPage, AgentOutdatedPage, LocalNetworkBlockedPage, LocalNetworkExplainPage, NotAllowedPage, PairingPage } from "./agent-pages.js";
import { DiagnosticsPage, DownloadPage, InitialisePage, RenewChoosePage } from "./action-pages.js";
import { HelpPage } from "./help-page.js";
import { OperationPage } from "./operation-page.js";
import { RedownloadPage } from "./redownload-page.js";
import { OrganisationPage, useBell } from "./org-page.js";
import { StatusPage } from "./status-page.js";
import { StepUpApprovalPage } from "./step-up-page.js";

/** Where the agent stands for this page. */
export type AgentState =
  | { kind: "checking" }
  | { kind: "lna-explain" }
  | { kind: "lna-blocked" }
  | { kind: "absent"; problem: Problem }
  | { kind: "not-allowed"; problem: Problem }
  | { kind: "outdated"; hello: HelloResponse; problem: Problem }
  | { kind: "unpaired"; hello: HelloResponse }
  | { kind: "ready"; hello: HelloResponse };

const agent = new AgentClient();
/** What the server publishes for download, read once per page load. */
const published = loadDownloads();
/** How often a page without a (current) agent asks for one. */
const agentPollMs = 2_000;
/** The holder has read what the browser's local network question means (this page load). */
let localNetworkExplained = false;

function useHashRoute() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const f = () => setHash(location.hash);
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  return parseHash(hash);
}

/** How often the server's health is asked again (sooner when the page comes back into view or the network returns). */
const healthEveryMs = 30_000;

/** The server's reachability, asked at load and again every 30 s, on focus and when the network returns: the banner follows it. */
function useServerHealth(): Problem | null {
  const [down, setDown] = useState<Problem | null>(null);
  useEffect(() => {
    let live = true;
    const check = () => {
      fetch("/healthz", { cache: "no-store" }).then((r) => { if (!r.ok) throw new TypeError("unhealthy"); if (live) setDown(null); })
        .catch((e: unknown) => { if (live) setDown(asProblem(e)); });
    };
    check();
    const timer = setInterval(check, healthEveryMs);
    addEventListener("focus", check);
    addEventListener("online", check);
    return () => { live = false; clearInterval(timer); removeEventListener("focus", check); removeEventListener("online", check); };
  }, []);
  return down;
}

function App() {
  useLang();
  const route = useHashRoute();
  const [state, setState] = useState<AgentState>({ kind: "checking" });
  const serverDown = useServerHealth();
  const bell = useBell();

  const [downloads, setDownloads] = useState<Downloads | null>(null);
  const probing = useRef(false);

  /**
   * Where the agent stands: asks /v1/hello unless the browser would first
   * ask the holder (explained before) or has refused (how to re-allow).
   * `quiet` (the polling): no "looking" flash, and the page changes only
   * when the state's kind does.
   */
  const check = useCallback(async (quiet = false) => {
    if (probing.current) return;
    probing.current = true;
    const set = (next: AgentState) => setState((s) => (quiet && s.kind === next.kind ? s : next));
    try {
      const dl = await published;
      setDownloads(dl);
      const permission = await loopbackPermission();
      if (permission === "denied") return set({ kind: "lna-blocked" });
      if (permission === "prompt" && !localNetworkExplained) return set({ kind: "lna-explain" });
      if (!quiet) setState({ kind: "checking" });
      try {
        const hello = await agent.hello();
        const required = dl.kind === "published" && versionBelow(MIN_AGENT_VERSION, dl.version) ? dl.version : MIN_AGENT_VERSION;
        if (hello.protocol !== AGENT_PROTOCOL || versionBelow(hello.version, required)) {
          return set({ kind: "outdated", hello, problem: problemOf("AGENT_OUTDATED", { version: hello.version, required }) });
        }
        if (!hello.paired) agent.token = null;
        set(hello.paired ? { kind: "ready", hello } : { kind: "unpaired", hello });
      } catch (e) {
        const p = asProblem(e, "AGENT_NOT_RUNNING");
        if (p.code === "AGENT_NOT_RUNNING" && (await loopbackPermission()) === "denied") return set({ kind: "lna-blocked" });
        set(p.code === "ORIGIN_NOT_PAIRED" ? { kind: "not-allowed", problem: p } : { kind: "absent", problem: p });
      }
    } finally {
      probing.current = false;
    }
  }, []);
  useEffect(() => { void check(); }, [check]);

  // While the holder installs (or upgrades) the agent, ask again every few seconds: the page moves on by itself.
  useEffect(() => {
    if (state.kind !== "absent" && state.kind !== "outdated") return;
    const timer = setInterval(() => void check(true), agentPollMs);
    return () => clearInterval(timer);
  }, [state.kind, check]);

  /** A page reports that the pairing is gone (expired token, agent restarted): pair again, then the same page carries on. */
  const lostPairing = useCallback((e: unknown) => {
    if (!needsPairing(e)) return false;
    agent.token = null;
    setState((s) => ("hello" in s ? { kind: "unpaired", hello: s.hello } : s));
    return true;
  }, []);

  const [page = "status", arg] = route.path;
  const needsAgent = !["help", "org"].includes(page);
  let body;
  if (needsAgent && state.kind !== "ready") {
    switch (state.kind) {
      case "checking": body = <Busy label={t("agent.looking")} />; break;
      case "lna-explain": body = <LocalNetworkExplainPage onContinue={() => { localNetworkExplained = true; void check(); }} />; break;
      case "lna-blocked": body = <LocalNetworkBlockedPage onRetry={() => void check()} />; break;
      case "absent": body = <AgentAbsentPage problem={state.problem} agentBase={agent.base} downloads={downloads} onRetry={() => void check()} />; break;
      case "not-allowed": body = <NotAllowedPage problem={state.problem} onRetry={() => void check()} />; break;
      case "outdated": body = <AgentOutdatedPage problem={state.problem} downloads={downloads} onRetry={() => void check()} />; break;
      case "unpaired": body = <PairingPage agent={agent} onPaired={() => void check()} />; break;
    }
  } else {
    const ctx = { agent, lostPairing };
    switch (page) {
      case "status": body = <StatusPage {...ctx} />; break;
      case "renew": body = <RenewChoosePage {...ctx} query={route.query} />; break;
      case "download": body = <DownloadPage {...ctx} query={route.query} />; break;
      case "redownload": body = <RedownloadPage {...ctx} query={route.query} />; break;
      case "initialise": body = <InitialisePage {...ctx} query={route.query} />; break;
      case "diagnostics": body = <DiagnosticsPage {...ctx} hello={"hello" in state ? state.hello : undefined} />; break;
      case "op": body = <OperationPage {...ctx} id={arg ?? ""} />; break;
      case "help": body = <HelpPage key={arg ?? ""} code={arg} />; break;
      case "org": body = <OrganisationPage bell={bell} />; break;
      default: body = <ProblemView problem={problemOf("ROUTE_NOT_FOUND")} />;
    }
  }

  const nav: [string, string][] = [
    ["#/", t("nav.status")], ["#/renew", t("nav.renew")], ["#/download", t("nav.download")], ["#/initialise", t("nav.initialise")],
    ["#/org", t("nav.org")], ["#/diagnostics", t("nav.diagnostics")], ["#/help", t("nav.help")],
  ];
  const current = `#/${page === "status" ? "" : page}`;
  return (
    <>
      <a class="skip" href="#main">{t("common.skip")}</a>
      <header class="top">
        <div class="brand"><img src="/favicon.svg" alt="" width="28" height="28" /> <span>{t("portal.title")}</span></div>
        <nav aria-label={t("nav.label")}>
          {nav.map(([href, label]) => <a href={href} aria-current={href === current ? "page" : undefined}>{label}</a>)}
        </nav>
        <div class="tools">
          <a class="bell" href="#/org" aria-label={t("bell.label", { n: bell.count })} title={t("bell.label", { n: bell.count })}>
            <svg aria-hidden="true" viewBox="0 0 24 24" width="22" height="22"><path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z" /></svg>{bell.count > 0 ? <span class="badge">{bell.count}</span> : null}
          </a>
          <LangSwitch />
        </div>
      </header>
      {serverDown ? <div class="banner"><ProblemView problem={serverDown} helpHref={`#/help/${serverDown.code}`} /></div> : null}
      <main id="main" tabIndex={-1}>{body}</main>
      <footer class="foot">
        <p>{t("portal.footer")}</p>
      </footer>
    </>
  );
}

/** A step-up link opened on a second device: its own page, no agent needed. */
function StepUpShell(props: { link: string }) {
  useLang();
  return (
    <>
      <header class="top">
        <div class="brand"><img src="/favicon.svg" alt="" width="28" height="28" /> <span>{t("portal.title")}</span></div>
        <div class="tools"><LangSwitch /></div>
      </header>
      <main id="main"><StepUpApprovalPage link={props.link} /></main>
    </>
  );
}

const stepUp = /^\/step-up\/([^/]+)$/.exec(location.pathname);
render(stepUp ? <StepUpShell link={decodeURIComponent(stepUp[1]!)} /> : <App />, document.getElementById("app")!);
