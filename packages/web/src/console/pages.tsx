import { useEffect, useState } from "preact/hooks";
import { day, dayTime, subjectName } from "../shared/format.js";
import { lang, pick, t, useLang, type MessageKey } from "../shared/i18n.js";
import { auditKeyLabel } from "./audit-labels.js";
import { asProblem, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";
import {
  admin, certificateStatuses, orderStates, revocationReasons,
  type AuditEntry, type Certificate, type Enrolment, type Expiries, type Holder, type KeyRecovery, type KmcEscrow, type Operator, type Order, type OutboxMessage, type ProfileView,
} from "./admin-client.js";
import { ExpiryChart, Funnel } from "./charts.js";

/** Loads once per `deps` change; problems are shown, never thrown. */
function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data: T | null; problem: Problem | null; reload: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    setProblem(null);
    load().then((d) => { if (live) setData(d); }, (e: unknown) => { if (live) setProblem(asProblem(e)); });
    return () => { live = false; };
  }, [...deps, n]);
  return { data, problem, reload: () => setN((x) => x + 1) };
}

let profileNames: Promise<Map<string, { "zh-CN": string; en: string }>> | undefined;

/** A profile's name in the page's language (its id as a tooltip), loaded once per console visit; the id until the names are in. */
function ProfileName(props: { id: string }) {
  useLang();
  const [names, setNames] = useState<Map<string, { "zh-CN": string; en: string }> | null>(null);
  useEffect(() => {
    profileNames ??= admin<{ profiles: ProfileView[] }>("GET", "/profiles").then((r) => new Map(r.profiles.map((p) => [p.id, p.name])), () => {
      profileNames = undefined;
      return new Map();
    });
    let live = true;
    void profileNames.then((m) => { if (live) setNames(m); });
    return () => { live = false; };
  }, []);
  const name = names?.get(props.id);
  return <span data-profile={props.id} title={props.id}>{name ? pick(name) : props.id}</span>;
}

/** A subject DN as the holder's name and organisation, the DN as a tooltip. */
const Subject = (p: { dn: string }) => <span title={p.dn}>{subjectName(p.dn)}</span>;

const Problemish = (p: { problem: Problem | null }) => (p.problem ? <ProblemView problem={p.problem} /> : null);

export function DashboardPage() {
  useLang();
  const ex = useLoad(() => admin<Expiries>("GET", "/stats/expiries"), []);
  const orders = useLoad(() => admin<{ byState: Record<string, number> }>("GET", "/stats/orders"), []);
  return (
    <div class="page" data-page="dashboard">
      <h1>{t("dash.title")}</h1>
      <Problemish problem={ex.problem ?? orders.problem} />
      <section><h2>{t("dash.expiries")}</h2>{ex.data ? <ExpiryChart data={ex.data} /> : <Busy />}</section>
      <section><h2>{t("dash.funnel")}</h2>{orders.data ? <Funnel byState={orders.data.byState} /> : <Busy />}</section>
    </div>
  );
}

function CertTable(props: { certs: Certificate[]; onChanged: () => void }) {
  useLang();
  const [revoking, setRevoking] = useState<string | null>(null);
  const [reason, setReason] = useState<string>("unspecified");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const now = Date.now();
  const unlockRenewal = async (serial: string) => {
    setProblem(null); setNotice(null);
    try {
      await admin("POST", `/certificates/${serial}/renewal-unlock`);
      setNotice(t("con.renewalUnlocked", { serial }));
      props.onChanged();
    } catch (x) { setProblem(asProblem(x)); }
  };
  /** Hold and its release: the certificate's row changes, so the list is read again. */
  const act = async (path: string) => {
    setProblem(null); setNotice(null);
    try {
      await admin("POST", path);
      props.onChanged();
    } catch (x) { setProblem(asProblem(x)); }
  };
  return (
    <>
      <Problemish problem={problem} />
      {notice ? <p class="notice" role="status" data-notice="renewal-unlocked">{notice}</p> : null}
      <table class="data" data-table="certificates">
        <thead><tr><th>{t("cert.serial")}</th><th>{t("cert.subject")}</th><th>{t("con.holder")}</th><th>{t("con.profile")}</th><th>{t("con.pairColumn")}</th><th>{t("cert.validity")}</th><th>{t("con.status")}</th><th /></tr></thead>
        <tbody>
          {props.certs.map((c) => (
            <tr data-serial={c.serial} data-status={c.status} class={c.status === "active" && c.notAfter - now < 30 * 86_400_000 ? "warn" : ""}>
              <td><code>{c.serial}</code></td><td><Subject dn={c.subjectDn} /></td><td><a href={`#/holders/${encodeURIComponent(c.holderId)}`}>{c.holderId}</a></td><td><ProfileName id={c.profileId} /></td>
              <td data-pair={c.pair?.role ?? "single"}>{c.pair ? <>
                {t(c.pair.role === "signing" ? "con.pairSigning" : "con.pairEncryption")}
                <br /><small class="hint" data-other-serial={c.pair.otherSerial}>{t("con.pairOther", { serial: c.pair.otherSerial })}</small>
                <br /><small class="hint" data-escrow={c.pair.escrowId}>{t("con.pairEscrow", { id: c.pair.escrowId })}</small>
              </> : t("con.pairSingle")}</td>
              <td>{day(c.notBefore)} — {day(c.notAfter)}</td>
              <td>{c.status === "revoked" && c.revocationReason === "certificateHold" ? t("cstatus.onHold")
                : <>{t(`cstatus.${c.status as (typeof certificateStatuses)[number]}`)}{c.revocationReason ? `（${t(`reason.${c.revocationReason as (typeof revocationReasons)[number]}`)}）` : ""}</>}</td>
              <td>
                {c.status === "active" && revoking !== c.serial ? <button type="button" class="danger" data-action="revoke" onClick={() => { setRevoking(c.serial); setProblem(null); }}>{t("con.revoke")}</button> : null}
                {/* Only where a pause runs: elsewhere the button would do nothing. */}
                {c.renewalLockedUntil && c.renewalLockedUntil > now ? <><span class="warn" data-locked-until={c.renewalLockedUntil}>{t("con.renewalPausedUntil", { at: dayTime(c.renewalLockedUntil) })}</span>{" "}
                  <button type="button" data-action="renewal-unlock" onClick={() => void unlockRenewal(c.serial)}>{t("con.renewalUnlock")}</button></> : null}
                {c.status === "active" && revoking !== c.serial ? <button type="button" data-action="hold" onClick={() => void act(`/certificates/${c.serial}/hold`)}>{t("con.hold")}</button> : null}
                {c.status === "revoked" && c.revocationReason === "certificateHold" ? <button type="button" data-action="release-hold" onClick={() => void act(`/certificates/${c.serial}/hold/release`)}>{t("con.releaseHold")}</button> : null}
                {revoking === c.serial ? (
                  <form class="inline" onSubmit={async (e) => {
                    e.preventDefault();
                    try { await admin("POST", `/certificates/${c.serial}/revoke`, { reason }); setRevoking(null); props.onChanged(); } catch (x) { setProblem(asProblem(x)); }
                  }}>
                    <label>{t("con.reason")} <select name="reason" value={reason} onChange={(e) => setReason(e.currentTarget.value)}>
                      {revocationReasons.map((r) => <option value={r}>{t(`reason.${r}`)}</option>)}
                    </select></label>
                    <button type="submit" class="danger" data-action="confirm-revoke">{t("con.confirmRevoke")}</button>
                    <button type="button" onClick={() => setRevoking(null)}>{t("common.cancel")}</button>
                  </form>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.certs.length === 0 ? <p>{t("con.none")}</p> : null}
    </>
  );
}

export function CertificatesPage(props: { query: URLSearchParams }) {
  useLang();
  const [q, setQ] = useState({ holderId: props.query.get("holderId") ?? "", status: "", subject: "", expiringBefore: "" });
  const [applied, setApplied] = useState(q);
  const params = new URLSearchParams();
  if (applied.holderId) params.set("holderId", applied.holderId);
  if (applied.status) params.set("status", applied.status);
  if (applied.subject) params.set("subject", applied.subject);
  if (applied.expiringBefore) params.set("expiringBefore", new Date(`${applied.expiringBefore}T00:00:00+08:00`).toISOString());
  const list = useLoad(() => admin<{ certificates: Certificate[] }>("GET", `/certificates?${params.toString()}`), [params.toString()]);
  return (
    <div class="page" data-page="certificates">
      <h1>{t("con.certificates")}</h1>
      <form class="filters" role="search" onSubmit={(e) => { e.preventDefault(); setApplied({ ...q }); }}>
        <label>{t("con.holder")} <input name="holderId" value={q.holderId} onInput={(e) => setQ({ ...q, holderId: e.currentTarget.value.trim() })} /></label>
        <label>{t("con.status")} <select name="status" value={q.status} onChange={(e) => setQ({ ...q, status: e.currentTarget.value })}>
          <option value="">{t("con.any")}</option>{certificateStatuses.map((s) => <option value={s}>{t(`cstatus.${s}`)}</option>)}
        </select></label>
        <label>{t("cert.subject")} <input name="subject" value={q.subject} onInput={(e) => setQ({ ...q, subject: e.currentTarget.value })} /></label>
        <label>{t("con.expiringBefore")} <input name="expiringBefore" type="date" value={q.expiringBefore} onInput={(e) => setQ({ ...q, expiringBefore: e.currentTarget.value })} /></label>
        <button type="submit" class="primary">{t("con.search")}</button>
      </form>
      <Problemish problem={list.problem} />
      {list.data ? <CertTable certs={list.data.certificates} onChanged={list.reload} /> : list.problem ? null : <Busy />}
    </div>
  );
}

/**
 * Registers a holder (POST /admin/holders, role operator): the ID number
 * goes in the body only and the server keeps a keyed hash and a masked
 * form. On success the new holder's page opens.
 */
function AddHolderForm() {
  useLang();
  const [f, setF] = useState({ id: "", name: "", kind: "person", idType: "resident-id", idNumber: "", phone: "", email: "" });
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const field = (k: keyof typeof f, label: string, extra: Record<string, unknown> = {}) => (
    <label>{label} <input name={`new-${k}`} autoComplete="off" value={f[k]} onInput={(e) => setF({ ...f, [k]: e.currentTarget.value })} {...extra} /></label>
  );
  return (
    <details class="card" data-form="add-holder">
      <summary>{t("con.addHolder")}</summary>
      <form onSubmit={async (e) => {
        e.preventDefault(); setProblem(null); setBusy(true);
        const opt = (v: string) => (v.trim() ? v.trim() : undefined);
        try {
          const h = await admin<Holder>("POST", "/holders", {
            id: f.id.trim(), name: f.name.trim(), kind: f.kind, idType: f.idType, idNumber: f.idNumber.trim(),
            ...(opt(f.phone) ? { phone: opt(f.phone) } : {}), ...(opt(f.email) ? { email: opt(f.email) } : {}),
          });
          location.hash = `#/holders/${encodeURIComponent(h.id)}`;
        } catch (x) { setProblem(asProblem(x)); } finally { setBusy(false); }
      }}>
        {field("id", "ID", { required: true, pattern: "[A-Za-z0-9._-]{1,64}" })}
        {field("name", t("con.name"), { required: true })}
        <label>{t("con.kind")} <select name="new-kind" value={f.kind} onChange={(e) => setF({ ...f, kind: e.currentTarget.value })}>
          <option value="person">{t("con.kindPerson")}</option><option value="organisation">{t("con.kindOrganisation")}</option></select></label>
        <label>{t("con.idType")} <select name="new-idType" value={f.idType} onChange={(e) => setF({ ...f, idType: e.currentTarget.value })}>
          <option value="resident-id">{t("con.idResident")}</option><option value="uscc">{t("con.idUscc")}</option><option value="passport">{t("con.idPassport")}</option></select></label>
        {field("idNumber", t("con.idNumber"), { required: true })}
        {field("phone", t("con.phone"))}
        {field("email", "E-mail")}
        <button type="submit" class="primary" disabled={busy}>{t("con.addHolder")}</button>
        <Problemish problem={problem} />
      </form>
    </details>
  );
}

export function HoldersPage(props: { id?: string | undefined }) {
  useLang();
  const [idType, setIdType] = useState("resident-id");
  const [idNumber, setIdNumber] = useState("");
  const [found, setFound] = useState<Holder[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const list = useLoad(() => (props.id ? admin<Holder>("GET", `/holders/${encodeURIComponent(props.id)}`).then((h) => [h]) : admin<{ holders: Holder[] }>("GET", "/holders").then((r) => r.holders)), [props.id]);
  const certs = useLoad(() => (props.id ? admin<{ certificates: Certificate[] }>("GET", `/certificates?holderId=${encodeURIComponent(props.id)}`) : Promise.resolve({ certificates: [] })), [props.id]);
  const escrows = useLoad(() => (props.id ? admin<{ escrows: KmcEscrow[] }>("GET", `/holders/${encodeURIComponent(props.id)}/kmc-escrows`) : Promise.resolve({ escrows: [] })), [props.id]);
  const shown = found ?? list.data;
  return (
    <div class="page" data-page="holders">
      <h1>{props.id ? `${t("con.holder")} ${props.id}` : t("con.holders")}</h1>
      <form class="filters" role="search" onSubmit={async (e) => {
        e.preventDefault(); setProblem(null);
        // POST, so that the ID number is in no URL and no access log.
        try { setFound((await admin<{ holders: Holder[] }>("POST", "/holders/search", { idType, idNumber: idNumber.trim() })).holders); } catch (x) { setProblem(asProblem(x)); }
      }}>
        <label>{t("con.idType")} <input value={idType} onInput={(e) => setIdType(e.currentTarget.value.trim())} /></label>
        <label>{t("con.idNumber")} <input name="idNumber" autoComplete="off" value={idNumber} onInput={(e) => setIdNumber(e.currentTarget.value)} /></label>
        <button type="submit" class="primary">{t("con.searchById")}</button>
        {found ? <button type="button" onClick={() => { setFound(null); setIdNumber(""); }}>{t("con.clear")}</button> : null}
      </form>
      {props.id ? null : <AddHolderForm />}
      <Problemish problem={problem ?? list.problem} />
      {shown ? (
        <table class="data" data-table="holders">
          <thead><tr><th>ID</th><th>{t("con.name")}</th><th>{t("con.kind")}</th><th>{t("con.idNumber")}</th><th>{t("con.phone")}</th><th>{t("con.org")}</th></tr></thead>
          <tbody>{shown.map((h) => (
            <tr data-holder={h.id}><td><a href={`#/holders/${encodeURIComponent(h.id)}`}>{h.id}</a></td><td>{h.name}</td><td>{h.kind}</td><td>{h.idMasked}</td><td>{h.phone ?? "—"}</td><td>{h.organisationId ?? "—"}</td></tr>
          ))}</tbody>
        </table>
      ) : <Busy />}
      {found && found.length === 0 ? <p role="status">{t("con.none")}</p> : null}
      {props.id && certs.data ? <><h2>{t("con.certificates")}</h2><CertTable certs={certs.data.certificates} onChanged={certs.reload} /></> : null}
      {props.id && escrows.data && escrows.data.escrows.length > 0 ? (
        <>
          <h2>{t("con.escrows")}</h2>
          <table class="data" data-table="escrows">
            <thead><tr><th>{t("con.escrowId")}</th><th>{t("con.keyAlgorithm")}</th><th>{t("con.publicKeyHash")}</th><th>{t("con.escrowedAt")}</th></tr></thead>
            <tbody>{escrows.data.escrows.map((e) => (
              <tr data-escrow={e.id}><td><code>{e.id}</code></td><td>{e.algorithm.toUpperCase()}</td><td><code>{e.spkiSha256.slice(0, 16)}…</code></td><td>{dayTime(e.createdAt)}</td></tr>
            ))}</tbody>
          </table>
          <p><a href={`#/recoveries?holderId=${encodeURIComponent(props.id)}`} data-action="recover-keys">{t("con.recoverKeys")}</a></p>
        </>
      ) : null}
    </div>
  );
}

export function EnrolmentsPage() {
  useLang();
  const [holderId, setHolderId] = useState("");
  const [profileId, setProfileId] = useState("personal");
  const [ttlDays, setTtlDays] = useState("14");
  const [created, setCreated] = useState<{ enrolment: Enrolment; referenceNumber: string; authorizationCode: string } | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const list = useLoad(() => admin<{ enrolments: Enrolment[] }>("GET", "/enrolments"), []);
  const profiles = useLoad(() => admin<{ profiles: ProfileView[] }>("GET", "/profiles"), []);
  return (
    <div class="page" data-page="enrolments">
      <h1>{t("con.enrolments")}</h1>
      <form class="filters no-print" onSubmit={async (e) => {
        e.preventDefault(); setProblem(null); setCreated(null);
        const ttl = Number.parseInt(ttlDays, 10);
        try {
          setCreated(await admin("POST", "/enrolments", { holderId: holderId.trim(), profileId, ...(Number.isFinite(ttl) ? { ttlDays: ttl } : {}) }));
          list.reload();
        } catch (x) { setProblem(asProblem(x)); }
      }}>
        <label>{t("con.holder")} <input name="holderId" required value={holderId} onInput={(e) => setHolderId(e.currentTarget.value)} /></label>
        <label>{t("con.profile")} <select name="profileId" value={profileId} onChange={(e) => setProfileId(e.currentTarget.value)}>
          {(profiles.data?.profiles ?? [{ id: "personal", name: { "zh-CN": "personal", en: "personal" } }]).map((p) => <option value={p.id} title={p.id}>{pick(p.name)}</option>)}
        </select></label>
        <label>{t("con.ttlDays")} <input name="ttlDays" inputMode="numeric" value={ttlDays} onInput={(e) => setTtlDays(e.currentTarget.value)} /></label>
        <button type="submit" class="primary">{t("con.createEnrolment")}</button>
      </form>
      <Problemish problem={problem} />
      {created ? (
        <section class="card print-slip" data-enrolment={created.enrolment.id}>
          <h2>{t("con.slipTitle")}</h2>
          <dl>
            <dt>{t("con.holder")}</dt><dd>{created.enrolment.holderId}</dd>
            <dt>{t("download.reference")}</dt><dd><code data-field="reference">{created.referenceNumber}</code></dd>
            <dt>{t("download.code")}</dt><dd><code data-field="code">{created.authorizationCode}</code></dd>
            <dt>{t("con.expires")}</dt><dd>{dayTime(created.enrolment.expiresAt)}</dd>
          </dl>
          <p class="hint">{t("con.slipHint")}</p>
          <p class="no-print"><button type="button" onClick={() => print()}>{t("con.print")}</button> <span class="warn">{t("con.shownOnce")}</span></p>
        </section>
      ) : null}
      <h2 class="no-print">{t("con.enrolmentList")}</h2>
      {list.data ? (
        <table class="data no-print" data-table="enrolments">
          <thead><tr><th>{t("download.reference")}</th><th>{t("con.holder")}</th><th>{t("con.profile")}</th><th>{t("con.status")}</th><th>{t("con.attempts")}</th><th>{t("con.expires")}</th><th /></tr></thead>
          <tbody>{list.data.enrolments.map((en) => (
            <tr data-enrolment={en.id}><td><code>{en.referenceNumber}</code></td><td>{en.holderId}</td><td><ProfileName id={en.profileId} /></td><td data-status={en.status}>{t(`estatus.${en.status as "open" | "used" | "expired" | "revoked" | "locked"}`)}</td><td>{en.attempts}/{en.maxAttempts}</td><td>{dayTime(en.expiresAt)}</td>
              <td>{en.status === "open" ? <button type="button" onClick={async () => { try { await admin("POST", `/enrolments/${en.id}/revoke`); list.reload(); } catch (x) { setProblem(asProblem(x)); } }}>{t("con.withdraw")}</button> : null}</td></tr>
          ))}</tbody>
        </table>
      ) : <Busy />}
    </div>
  );
}

/** Key recovery under dual control: open a request, and approve or reject someone else's (docs/console.md). */
export function RecoveriesPage(props: { query: URLSearchParams }) {
  useLang();
  const [holderId, setHolderId] = useState(props.query.get("holderId") ?? "");
  const [profileId, setProfileId] = useState("personal");
  const [escrowIds, setEscrowIds] = useState("");
  const [reason, setReason] = useState("");
  const [released, setReleased] = useState<{ recovery: KeyRecovery; referenceNumber: string; authorizationCode: string } | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const me = useLoad(() => admin<{ id: string; role: string }>("GET", "/me"), []);
  const list = useLoad(() => admin<{ recoveries: KeyRecovery[] }>("GET", "/kmc-recoveries"), []);
  const profiles = useLoad(() => admin<{ profiles: ProfileView[] }>("GET", "/profiles"), []);
  const decide = async (r: KeyRecovery, what: "approve" | "reject") => {
    setProblem(null); setReleased(null);
    try {
      if (what === "approve") setReleased(await admin("POST", `/kmc-recoveries/${encodeURIComponent(r.id)}/approve`));
      else await admin("POST", `/kmc-recoveries/${encodeURIComponent(r.id)}/reject`, {});
    } catch (x) { setProblem(asProblem(x)); }
    list.reload();
  };
  const statusOf = (r: KeyRecovery) => (r.expired ? "expired" : r.status);
  return (
    <div class="page" data-page="recoveries">
      <h1>{t("con.recoveries")}</h1>
      <p class="hint no-print">{t("con.recoveryRule")}</p>
      {me.data?.role !== "auditor" ? (
        <form class="filters no-print" data-form="open-recovery" onSubmit={async (e) => {
          e.preventDefault(); setProblem(null); setReleased(null);
          const ids = escrowIds.split(/\s+/).filter(Boolean);
          try {
            await admin("POST", "/kmc-recoveries", { holderId: holderId.trim(), profileId, reason, ...(ids.length ? { escrowIds: ids } : {}) });
            setReason(""); setEscrowIds("");
            list.reload();
          } catch (x) { setProblem(asProblem(x)); }
        }}>
          <label>{t("con.holder")} <input name="holderId" required value={holderId} onInput={(e) => setHolderId(e.currentTarget.value)} /></label>
          <label>{t("con.profile")} <select name="profileId" value={profileId} onChange={(e) => setProfileId(e.currentTarget.value)}>
            {(profiles.data?.profiles ?? [{ id: "personal", name: { "zh-CN": "personal", en: "personal" } }]).map((p) => <option value={p.id} title={p.id}>{pick(p.name)}</option>)}
          </select></label>
          <label>{t("con.reason")} <input name="reason" required maxLength={500} value={reason} onInput={(e) => setReason(e.currentTarget.value)} /></label>
          <label>{t("con.escrowIds")} <textarea name="escrowIds" rows={2} value={escrowIds} onInput={(e) => setEscrowIds(e.currentTarget.value)} /></label>
          <button type="submit" class="primary">{t("con.openRecovery")}</button>
        </form>
      ) : null}
      <Problemish problem={problem} />
      {released ? (
        <section class="card print-slip" data-recovery-slip={released.recovery.id}>
          <h2>{t("con.recoverySlipTitle")}</h2>
          <dl>
            <dt>{t("con.holder")}</dt><dd>{released.recovery.holderId}</dd>
            <dt>{t("con.keys")}</dt><dd>{released.recovery.escrowIds.length}</dd>
            <dt>{t("download.reference")}</dt><dd><code data-field="reference">{released.referenceNumber}</code></dd>
            <dt>{t("download.code")}</dt><dd><code data-field="code">{released.authorizationCode}</code></dd>
          </dl>
          <p class="hint">{t("con.recoverySlipHint")}</p>
          <p class="no-print"><button type="button" onClick={() => print()}>{t("con.print")}</button> <span class="warn">{t("con.shownOnce")}</span></p>
        </section>
      ) : null}
      <h2 class="no-print">{t("con.recoveryList")}</h2>
      {list.data ? (
        <table class="data no-print" data-table="recoveries">
          <thead><tr><th>{t("con.holder")}</th><th>{t("con.keys")}</th><th>{t("con.reason")}</th><th>{t("con.requestedBy")}</th><th>{t("con.requestedAt")}</th><th>{t("con.expires")}</th><th>{t("con.status")}</th><th>{t("con.decidedBy")}</th><th /></tr></thead>
          <tbody>{list.data.recoveries.map((r) => (
            <tr data-recovery={r.id} data-status={statusOf(r)}>
              <td><a href={`#/holders/${encodeURIComponent(r.holderId)}`}>{r.holderId}</a></td><td>{r.escrowIds.length}</td><td>{r.reason}</td>
              <td>{r.requestedBy}</td><td>{dayTime(r.requestedAt)}</td><td>{dayTime(r.expiresAt)}</td>
              <td>{t(`rstatus.${statusOf(r)}`)}</td><td>{r.decidedBy ?? "—"}</td>
              <td>{r.status === "pending" && !r.expired ? (
                <>
                  {r.requestedBy === me.data?.id
                    ? <span class="hint" data-note="own-request">{t("con.ownRequest")}</span>
                    : <button type="button" class="primary" data-action="approve" onClick={() => void decide(r, "approve")}>{t("con.approve")}</button>}
                  {" "}<button type="button" class="danger" data-action="reject" onClick={() => void decide(r, "reject")}>{t("con.reject")}</button>
                </>
              ) : null}</td>
            </tr>
          ))}</tbody>
        </table>
      ) : <Busy />}
      {list.data?.recoveries.length === 0 ? <p>{t("con.none")}</p> : null}
    </div>
  );
}

export function OrdersPage() {
  useLang();
  const [state, setState] = useState("");
  const list = useLoad(() => admin<{ orders: Order[] }>("GET", `/orders${state ? `?state=${state}` : ""}`), [state]);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const failure = (o: Order) => {
    const f = o.data?.failure;
    if (o.state !== "failed" || !f) return null;
    if (f === "IDENTITY_MISMATCH") return t("con.failure.IDENTITY_MISMATCH", { n: o.data?.idAttempts ?? 5 });
    if (f === "CODE_ATTEMPTS_EXCEEDED") return t("con.failure.CODE_ATTEMPTS_EXCEEDED");
    return t("con.failure.other", { code: f });
  };
  return (
    <div class="page" data-page="orders">
      <h1>{t("con.orders")}</h1>
      <Problemish problem={problem} />
      {notice ? <p class="notice" role="status" data-notice="renewal-unlocked">{notice}</p> : null}
      <label>{t("con.status")} <select value={state} onChange={(e) => setState(e.currentTarget.value)}><option value="">{t("con.any")}</option>
        {orderStates.map((s) => <option value={s}>{t(`order.${s}`)}</option>)}</select></label>
      <Problemish problem={list.problem} />
      {list.data ? (
        <table class="data" data-table="orders">
          <thead><tr><th>ID</th><th>{t("con.holder")}</th><th>{t("con.status")}</th><th>{t("con.channel")}</th><th>{t("con.oldSerial")}</th><th>{t("con.newSerial")}</th><th>{t("con.updated")}</th><th>{t("con.failureReason")}</th></tr></thead>
          <tbody>{list.data.orders.map((o) => (
            <tr data-order={o.id}><td><code>{o.id}</code></td><td>{o.holderId}</td><td>{t(`order.${o.state as (typeof orderStates)[number]}`)}</td><td>{t(`channel.${o.channel as "web" | "mobile" | "cli" | "est"}`)}</td><td><code>{o.certificateSerial ?? "—"}</code></td><td><code>{o.newSerial ?? "—"}</code></td><td>{dayTime(o.updatedAt)}</td>
              <td data-failure={o.data?.failure ?? ""}>{failure(o)}
                {failure(o) && o.certificateSerial && o.renewalLockedUntil && o.renewalLockedUntil > Date.now() ? <> <span class="warn" data-locked-until={o.renewalLockedUntil}>{t("con.renewalPausedUntil", { at: dayTime(o.renewalLockedUntil) })}</span>{" "}
                  <button type="button" data-action="renewal-unlock" onClick={async () => {
                    setProblem(null); setNotice(null);
                    try { await admin("POST", `/certificates/${o.certificateSerial}/renewal-unlock`); setNotice(t("con.renewalUnlocked", { serial: o.certificateSerial! })); list.reload(); } catch (x) { setProblem(asProblem(x)); }
                  }}>{t("con.renewalUnlock")}</button></> : null}</td></tr>
          ))}</tbody>
        </table>
      ) : null}
    </div>
  );
}

export function OutboxPage() {
  useLang();
  const list = useLoad(() => admin<{ messages: OutboxMessage[] }>("GET", "/outbox"), []);
  return (
    <div class="page" data-page="outbox">
      <h1>{t("con.outbox")}</h1>
      <p class="hint">{t("con.outboxHint")}</p>
      <Problemish problem={list.problem} />
      {list.data ? (
        <table class="data" data-table="outbox">
          <thead><tr><th>{t("con.created")}</th><th>{t("con.channel")}</th><th>{t("con.recipient")}</th><th>{t("con.purpose")}</th><th>{t("con.text")}</th><th>{t("con.status")}</th><th>{t("con.lastError")}</th></tr></thead>
          <tbody>{list.data.messages.map((m) => (
            <tr><td>{dayTime(m.createdAt)}</td><td>{m.channel}/{m.transport}</td><td>{m.recipient}</td><td>{m.purpose}</td><td>{m.redactedText}</td><td>{m.status} ({m.attempts})</td><td>{m.lastError ?? ""}</td></tr>
          ))}</tbody>
        </table>
      ) : null}
    </div>
  );
}

/**
 * An audit entry's data as one "key: value" line each, instants (…At,
 * notBefore, notAfter) as China-time dates, and a nested value (a profile's
 * rules) folded away under "details".
 */
function AuditData(props: { data: Record<string, unknown> }) {
  useLang();
  const entries = Object.entries(props.data ?? {});
  if (entries.length === 0) return <span class="muted">—</span>;
  const value = (k: string, v: unknown) => {
    if (typeof v === "number" && v > 1e12 && /At$|^not(Before|After)$/.test(k)) return dayTime(v);
    if (k === "subject" && typeof v === "string") return <Subject dn={v} />;
    if (k === "profileId" && typeof v === "string") return <ProfileName id={v} />;
    if (typeof v === "boolean") return v ? t("con.yes") : t("con.no");
    if (v === null || typeof v !== "object") return String(v);
    return <details><summary>{t("common.details")}</summary><code class="json">{JSON.stringify(v)}</code></details>;
  };
  return (
    <dl class="kv">
      {entries.map(([k, v]) => <><dt title={k} data-key={k}>{auditKeyLabel(k, lang()) ?? k}</dt><dd>{value(k, v)}</dd></>)}
    </dl>
  );
}

export function AuditPage() {
  useLang();
  const [fromSeq, setFromSeq] = useState(1);
  const page = useLoad(() => admin<{ entries: AuditEntry[]; nextSeq: number | null }>("GET", `/audit?fromSeq=${fromSeq}&limit=100`), [fromSeq]);
  const [verify, setVerify] = useState<{ ok: boolean; entries: number; head?: string; firstBadSeq?: number; reason?: string } | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  return (
    <div class="page" data-page="audit">
      <h1>{t("con.audit")}</h1>
      <p><button type="button" class="primary" data-action="verify" onClick={async () => {
        setProblem(null);
        try { setVerify(await admin("GET", "/audit/verify")); } catch (x) { setProblem(asProblem(x)); }
      }}>{t("con.verify")}</button></p>
      {verify ? (
        <p class={verify.ok ? "ok" : "bad"} role="status" data-verify={verify.ok ? "ok" : "broken"}>
          {verify.ok ? t("con.verifyOk", { n: verify.entries, head: (verify.head ?? "").slice(0, 16) }) : t("con.verifyBroken", { seq: verify.firstBadSeq ?? "?", reason: verify.reason ?? "" })}
        </p>
      ) : null}
      <Problemish problem={problem ?? page.problem} />
      {page.data ? (
        <>
          <table class="data" data-table="audit">
            <thead><tr><th>#</th><th>{t("con.time")}</th><th>{t("con.actor")}</th><th>{t("con.action")}</th><th>{t("con.subject")}</th><th>{t("con.data")}</th></tr></thead>
            <tbody>{page.data.entries.map((e) => (
              <tr data-seq={e.seq}><td>{e.seq}</td><td class="nowrap">{dayTime(e.at)}</td><td>{e.actor}</td><td class="action"><code>{e.action}</code></td><td class="subject">{e.subjectType}<br /><code>{e.subjectId}</code></td>
                <td><AuditData data={e.data} /></td></tr>
            ))}</tbody>
          </table>
          <p>
            <button type="button" disabled={fromSeq <= 1} onClick={() => setFromSeq(Math.max(1, fromSeq - 100))}>{t("con.prev")}</button>{" "}
            <button type="button" disabled={!page.data.nextSeq} onClick={() => setFromSeq(page.data?.nextSeq ?? fromSeq)}>{t("con.next")}</button>
          </p>
        </>
      ) : null}
    </div>
  );
}

export function ProfilesPage() {
  useLang();
  const list = useLoad(() => admin<{ profiles: ProfileView[] }>("GET", "/profiles"), []);
  return (
    <div class="page" data-page="profiles">
      <h1>{t("con.profiles")}</h1>
      <Problemish problem={list.problem} />
      {list.data?.profiles.map((p) => (
        <section class="card" data-profile={p.id}>
          <h2>{pick(p.name)} <small>({p.id})</small></h2>
          <p>{t("con.profileFacts", {
            kind: t(p.certificateKind === "file" ? "con.kindFile" : "con.kindHardware"),
            anchor: t(p.validityAnchor === "carry-over" ? "con.anchorCarryOver" : "con.anchorIssuance"),
            validity: "years" in p.validity ? t("con.years", { n: Number(p.validity.years) }) : t("con.days", { n: Number(p.validity.days) }),
          })}</p>
          {/* SVG as an image, never as markup: it cannot run anything. */}
          <img class="timeline" alt={t("con.timelineAlt", { name: pick(p.name) })} src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(p.timelineSvg)}`} />
        </section>
      )) ?? <Busy />}
    </div>
  );
}

/** Operator accounts (admins): who is paused where, and lifting a pause. */
export function OperatorsPage() {
  useLang();
  const list = useLoad(() => admin<{ operators: Operator[] }>("GET", "/operators"), []);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const lift = async (id: string) => {
    setProblem(null); setNotice(null);
    try {
      const r = await admin<{ clientsCleared: number }>("POST", `/operators/${encodeURIComponent(id)}/unlock`);
      setNotice(t("con.pauseLifted", { id, n: r.clientsCleared }));
      list.reload();
    } catch (x) { setProblem(asProblem(x)); }
  };
  return (
    <div class="page" data-page="operators">
      <h1>{t("con.operators")}</h1>
      <p class="hint">{t("con.operatorsHint")}</p>
      <Problemish problem={problem ?? list.problem} />
      {notice ? <p class="notice" role="status" data-notice="pause-lifted">{notice}</p> : null}
      {list.data ? (
        <table class="data" data-table="operators">
          <thead><tr><th>{t("con.operatorId")}</th><th>{t("con.role")}</th><th>{t("con.signInPaused")}</th><th /></tr></thead>
          <tbody>
            {list.data.operators.map((o) => (
              <tr data-operator={o.id} class={o.signInPaused ? "warn" : ""}>
                <td>{o.id}</td><td>{t(`con.role.${o.role}` as MessageKey)}</td>
                <td>{o.signInPaused ? t("con.pausedFor", { n: o.signInPaused.clients, at: dayTime(o.signInPaused.until) }) : t("con.notPaused")}</td>
                <td>{o.signInPaused ? <button type="button" data-action="lift-pause" onClick={() => void lift(o.id)}>{t("con.liftPause")}</button> : null}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : <Busy />}
    </div>
  );
}
