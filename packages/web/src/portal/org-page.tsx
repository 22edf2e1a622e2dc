import { useEffect, useState } from "preact/hooks";
import { day, dayTime, subjectName } from "../shared/format.js";
import { shortSerial } from "../shared/policy.js";
import { pick, t, useLang } from "../shared/i18n.js";
import { fetchJson } from "../shared/http.js";
import { ProblemError, asProblem, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";

/** The holder API (sign-in with the customer number and a code, bell, certificates), under /api/v1/holder. */
export const HOLDER_API = "/api/v1/holder";
const TOKEN_KEY = "ukey.holderToken";

/** A certificate as GET /api/v1/holder/certificates and the bell list it. */
export interface HolderCertificate {
  serial: string; subjectDn: string; holderId: string; profileName: { "zh-CN": string; en: string } | null;
  notBefore: string; notAfter: string; status: string; onHold?: boolean; state: string; daysToExpiry: number; inNotice: boolean; renewed: boolean;
  window: { opensAt: string | null; closesAt: string | null }; explanation: { "zh-CN": string; en: string };
  /** The UKey it was issued onto, as the agent reported it at issuance. */
  tokenSerial?: string | null;
}
interface Bell { unreadCount: number; unread: { id: string; certificateSerial: string; threshold: number; notAfter: string }[]; expiring: HolderCertificate[] }

function holderToken(): string | null {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}
function setHolderToken(v: string | null) {
  try { if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY); } catch { /* tab only */ }
  for (const f of bellListeners) f();
}
const bellListeners = new Set<() => void>();

/** A signed-in holder call; each answer renews the session (X-Ukey-Session-Token), an ended one signs out. */
async function holderCall<T>(method: "GET" | "POST", path: string, json?: unknown): Promise<T> {
  const token = holderToken();
  let renewed: string | null = null;
  try {
    const r = await fetchJson<T>(`${HOLDER_API}${path}`, {
      method, headers: token ? { authorization: `Bearer ${token}` } : {}, ...(json !== undefined ? { json } : {}),
      onHeaders: (h: Headers) => { renewed = h.get("x-ukey-session-token"); },
    });
    if (renewed) try { sessionStorage.setItem(TOKEN_KEY, renewed); } catch { /* tab only */ }
    return r;
  } catch (e) {
    if (e instanceof ProblemError && e.problem.status === 401 && token) setHolderToken(null);
    throw e;
  }
}

/**
 * The serial of the signed-in holder's UKey as the server recorded it at the last issuance: the one key of its
 * certificates in force, or undefined (not signed in, none recorded, or several keys, as an organisation has).
 * The diagnostics pass it to the agent's doctor, which then names that key's vendor and advice when no key is seen.
 */
export async function knownTokenSerial(): Promise<string | undefined> {
  if (!holderToken()) return undefined;
  try {
    const { certificates } = await holderCall<{ certificates: HolderCertificate[] }>("GET", "/certificates");
    const keys = new Set(certificates.filter((c) => c.status === "active" && !c.renewed && c.tokenSerial).map((c) => c.tokenSerial!));
    return keys.size === 1 ? [...keys][0] : undefined;
  } catch {
    return undefined;
  }
}

/** The bell: how many certificates are in their notice period or expired (and unread reminders), for the signed-in holder. */
export function useBell(): { count: number; bell: Bell | null } {
  const [bell, setBell] = useState<Bell | null>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    const f = () => setN((x) => x + 1);
    bellListeners.add(f);
    return () => { bellListeners.delete(f); };
  }, []);
  useEffect(() => {
    if (!holderToken()) { setBell(null); return; }
    holderCall<Bell>("GET", "/bell").then(setBell, () => setBell(null));
  }, [n]);
  return { count: bell ? bell.expiring.length : 0, bell };
}

function SignInForm(props: { onSignedIn: () => void }) {
  useLang();
  const [holderId, setHolderId] = useState("");
  const [challenge, setChallenge] = useState<{ challengeId: string; expiresAt: string; resendAt: string } | null>(null);
  const [code, setCode] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [now, setNow] = useState(Date.now());
  useEffect(() => { const i = setInterval(() => setNow(Date.now()), 1000); return () => clearInterval(i); }, []);
  const send = async () => {
    setProblem(null);
    try { setChallenge(await fetchJson(`${HOLDER_API}/sign-in`, { method: "POST", json: { holderId: holderId.trim() } })); } catch (e) { setProblem(asProblem(e)); }
  };
  const wait = challenge ? Math.max(0, Math.ceil((Date.parse(challenge.resendAt) - now) / 1000)) : 0;
  return (
    <section class="card" data-form="holder-sign-in">
      <h2>{t("org.signIn")}</h2>
      <p class="hint">{t("org.signInExplain")}</p>
      {problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}
      {!challenge ? (
        <form onSubmit={(e) => { e.preventDefault(); void send(); }}>
          <label for="holder-id">{t("org.customerNumber")}</label>
          <input id="holder-id" name="holderId" autoComplete="username" required value={holderId} onInput={(e) => setHolderId(e.currentTarget.value)} />
          <button type="submit" class="primary">{t("org.sendCode")}</button>
        </form>
      ) : (
        <form onSubmit={async (e) => {
          e.preventDefault(); setProblem(null);
          try {
            const r = await fetchJson<{ token: string }>(`${HOLDER_API}/sign-in/verify`, { method: "POST", json: { challengeId: challenge.challengeId, code: code.trim() } });
            setHolderToken(r.token);
            props.onSignedIn();
          } catch (x) { setProblem(asProblem(x)); }
        }}>
          <p data-text="code-sent">{t("org.codeSentIfRegistered")} <span class="hint">{t("verify.otpExpires", { at: dayTime(challenge.expiresAt).slice(11) })}</span></p>
          <label for="holder-code">{t("verify.otpLabel")}</label>
          <input id="holder-code" name="code" inputMode="numeric" autoComplete="one-time-code" required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          <button type="submit" class="primary">{t("common.continue")}</button>{" "}
          <button type="button" disabled={wait > 0} onClick={send}>{wait > 0 ? t("verify.resendIn", { n: wait }) : t("verify.resend")}</button>
        </form>
      )}
    </section>
  );
}

function stateOf(c: HolderCertificate): { text: string; cls: string } {
  if (c.onHold) return { text: t("cert.onHold"), cls: "bad" };
  if (c.status === "revoked") return { text: t("cert.revoked"), cls: "bad" };
  if (c.renewed || c.status === "superseded") return { text: t("cert.superseded"), cls: "muted" };
  if (c.daysToExpiry < 0) return { text: t("cert.expired", { n: -c.daysToExpiry }), cls: "bad" };
  if (c.inNotice) return { text: t("cert.expiring", { n: c.daysToExpiry }), cls: "warn" };
  return { text: t("cert.valid", { n: c.daysToExpiry }), cls: "ok" };
}

/**
 * Seed 003's organisations: after sign-in with the customer number and a
 * code, every certificate of the organisation (its members' included),
 * earliest expiry first, the expiring ones marked red and listed at the top
 * (the bell in the header counts them).
 */
export function OrganisationPage(props: { bell: { count: number; bell: Bell | null } }) {
  useLang();
  const [signedIn, setSignedIn] = useState(!!holderToken());
  const [certs, setCerts] = useState<HolderCertificate[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    if (!signedIn) return;
    setCerts(null); setProblem(null);
    holderCall<{ certificates: HolderCertificate[] }>("GET", "/certificates?limit=1000").then((r) => setCerts(r.certificates), (e: unknown) => {
      const p = asProblem(e);
      if (!holderToken()) setSignedIn(false);
      setProblem(p);
    });
  }, [signedIn]);
  if (!signedIn) return <div class="page" data-page="org"><h1>{t("org.title")}</h1>{problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}<SignInForm onSignedIn={() => setSignedIn(true)} /></div>;
  const expiring = props.bell.bell?.expiring ?? [];
  return (
    <div class="page" data-page="org">
      <h1>{t("org.title")}</h1>
      <p><button type="button" class="link" onClick={() => { setHolderToken(null); setSignedIn(false); setCerts(null); }}>{t("con.signOut")}</button></p>
      {problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}
      {expiring.length > 0 ? (
        <section class="problem" role="alert" data-list="expiring">
          <h2>{t("org.expiringNow", { n: expiring.length })}</h2>
          <ul>{expiring.map((c) => <li data-serial={c.serial} data-on-hold={c.onHold ? "true" : undefined}><span title={c.subjectDn}>{subjectName(c.subjectDn)}</span> — {stateOf(c).text} ({day(c.notAfter)}){c.onHold ? <p class="hint">{t("cert.onHoldRemedy")}</p> : null}</li>)}</ul>
        </section>
      ) : null}
      {!certs && !problem ? <Busy /> : null}
      {certs ? (
        <table class="data org-table" data-table="org-certificates">
          <thead><tr><th>{t("cert.subject")}</th><th>{t("org.holder")}</th><th>{t("cert.serial")}</th><th>{t("org.expires")}</th><th>{t("org.state")}</th><th>{t("cert.window")}</th></tr></thead>
          <tbody>
            {certs.map((c) => {
              const s = stateOf(c);
              return (
                <tr class={s.cls === "warn" || s.cls === "bad" ? "warn" : ""} data-serial={c.serial} data-holder={c.holderId}>
                  <td title={c.subjectDn}>{subjectName(c.subjectDn)}</td><td>{c.holderId}</td><td><code title={c.serial}>{shortSerial(c.serial)}</code></td><td>{day(c.notAfter)}</td>
                  <td class={s.cls}>{s.text}{c.onHold ? <p class="hint">{t("cert.onHoldRemedy")}</p> : null}</td>
                  <td>{c.window.opensAt || c.window.closesAt ? t("window.dates", { from: day(c.window.opensAt), to: day(c.window.closesAt) }) : ""}<br /><span class="hint">{pick(c.explanation)}</span></td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}
