import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "../shared/styles.css";
import { t, useLang, type MessageKey } from "../shared/i18n.js";
import { asProblem, problemOf, type Problem } from "../shared/problem.js";
import { LangSwitch, ProblemView, parseHash } from "../shared/ui.js";
import { admin, adminToken, onSignedOut, setAdminToken } from "./admin-client.js";
import {
  AuditPage, CertificatesPage, DashboardPage, EnrolmentsPage, HoldersPage, OperatorsPage, OrdersPage, OutboxPage, ProfilesPage, RecoveriesPage,
} from "./pages.js";

function SignIn(props: { problem: Problem | null; onSignedIn: (who: { id: string; role: string }) => void }) {
  useLang();
  const [id, setId] = useState("");
  const [pw, setPw] = useState("");
  const [totp, setTotp] = useState("");
  const [problem, setProblem] = useState<Problem | null>(props.problem);
  const [busy, setBusy] = useState(false);
  return (
    <div class="page narrow" data-page="sign-in">
      <h1>{t("con.signIn")}</h1>
      {problem ? <ProblemView problem={problem} /> : null}
      <form class="card" onSubmit={async (e) => {
        e.preventDefault(); setBusy(true); setProblem(null);
        try {
          const r = await admin<{ token: string; operator: { id: string; role: string } }>("POST", "/sign-in", { operatorId: id.trim(), password: pw, totp: totp.trim() });
          setAdminToken(r.token);
          setPw(""); setTotp("");
          props.onSignedIn(r.operator);
        } catch (x) { setProblem(asProblem(x)); } finally { setBusy(false); }
      }}>
        <label for="op-id">{t("con.operatorId")}</label>
        <input id="op-id" name="username" autoComplete="username" required value={id} onInput={(e) => setId(e.currentTarget.value)} />
        <label for="op-pw">{t("con.password")}</label>
        <input id="op-pw" name="password" type="password" autoComplete="current-password" required value={pw} onInput={(e) => setPw(e.currentTarget.value)} />
        <label for="op-totp">{t("con.totp")}</label>
        <input id="op-totp" name="totp" inputMode="numeric" autoComplete="one-time-code" pattern="\d{6}" maxLength={6} required value={totp} onInput={(e) => setTotp(e.currentTarget.value)} />
        <button type="submit" class="primary" disabled={busy}>{t("con.signInButton")}</button>
      </form>
    </div>
  );
}

function Console() {
  useLang();
  const [hash, setHash] = useState(location.hash);
  const [who, setWho] = useState<{ id: string; role: string } | null>(null);
  const [checked, setChecked] = useState(false);
  const [signedOutProblem, setSignedOutProblem] = useState<Problem | null>(null);
  useEffect(() => {
    const f = () => setHash(location.hash);
    addEventListener("hashchange", f);
    const off = onSignedOut(() => { setWho(null); setSignedOutProblem(problemOf("SESSION_INVALID")); });
    if (adminToken()) admin<{ id: string; role: string }>("GET", "/me").then(setWho, () => undefined).finally(() => setChecked(true));
    else setChecked(true);
    return () => { removeEventListener("hashchange", f); off(); };
  }, []);
  if (!checked) return null;
  if (!who) return <><header class="top"><div class="brand">{t("con.title")}</div><div class="tools"><LangSwitch /></div></header>
    <main id="main"><SignIn problem={signedOutProblem} onSignedIn={(w) => { setSignedOutProblem(null); setWho(w); }} /></main></>;

  const { path } = parseHash(hash);
  const [page = "dashboard", arg] = path;
  const nav: [string, string][] = [
    ["dashboard", t("dash.title")], ["holders", t("con.holders")], ["certificates", t("con.certificates")], ["enrolments", t("con.enrolments")],
    ["recoveries", t("con.recoveries")], ["orders", t("con.orders")], ["outbox", t("con.outbox")], ["audit", t("con.audit")], ["profiles", t("con.profiles")],
    ...(who.role === "admin" ? [["operators", t("con.operators")] as [string, string]] : []),
  ];
  let body;
  switch (page) {
    case "dashboard": body = <DashboardPage />; break;
    case "holders": body = <HoldersPage key={arg ?? ""} id={arg} />; break;
    case "certificates": body = <CertificatesPage query={parseHash(hash).query} />; break;
    case "enrolments": body = <EnrolmentsPage />; break;
    case "recoveries": body = <RecoveriesPage query={parseHash(hash).query} />; break;
    case "orders": body = <OrdersPage />; break;
    case "outbox": body = <OutboxPage />; break;
    case "audit": body = <AuditPage />; break;
    case "profiles": body = <ProfilesPage />; break;
    case "operators": body = <OperatorsPage />; break;
    default: body = <ProblemView problem={problemOf("ROUTE_NOT_FOUND")} />;
  }
  return (
    <>
      <a class="skip" href="#main">{t("common.skip")}</a>
      <header class="top no-print">
        <div class="brand">{t("con.title")}</div>
        <nav aria-label={t("nav.label")}>{nav.map(([p, label]) => <a href={`#/${p}`} aria-current={p === page ? "page" : undefined}>{label}</a>)}</nav>
        <div class="tools">
          <span class="who">{who.id} · {t(`con.role.${who.role}` as MessageKey)}</span>
          <button type="button" class="link" onClick={() => { setAdminToken(null); setWho(null); }}>{t("con.signOut")}</button>
          <LangSwitch />
        </div>
      </header>
      <main id="main" tabIndex={-1}>{body}</main>
    </>
  );
}

render(<Console />, document.getElementById("app")!);
