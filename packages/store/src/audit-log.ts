import { createHash } from "node:crypto";
import { UkeyError } from "@ukey/policy";
import { canonicalJson } from "./canonical-json.js";
import { pageSize, type Executor } from "./executor.js";
import type { AuditEntry, AuditEntryInput, AuditLog, AuditVerification, Sql } from "./types.js";

/** prevHash of the first entry. */
export const GENESIS_HASH = "0".repeat(64);

/** Entries one page of `verify` reads; memory stays flat however long the log grows. */
const VERIFY_PAGE = 500;

const COLUMNS = "seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash";
const INSERT = `INSERT INTO audit_log (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;

interface AuditRow {
  seq: number | string; at: number | string; actor: string; action: string; subject_type: string;
  subject_id: string; data: string; prev_hash: string; hash: string;
}

/**
 * The hash of one entry: hex SHA-256 over the decimal seq, a newline, the
 * previous entry's hash, a newline, and the canonical JSON of
 * {action, actor, at, data, subjectId, subjectType}. Anyone holding an
 * export of the log can recompute it.
 */
export function auditEntryHash(seq: number, prevHash: string, e: Required<AuditEntryInput>, dataText = canonicalJson(e.data)): string {
  return hashOfBody(seq, prevHash, entryBody(e, dataText));
}

function hashOfBody(seq: number, prevHash: string, body: string): string {
  return createHash("sha256").update(`${seq}\n${prevHash}\n${body}`, "utf8").digest("hex");
}

/**
 * The entry's text columns, stored as they are: each must be text both
 * engines keep unchanged (PostgreSQL refuses NUL in text; canonicalJson
 * refuses unpaired surrogates), so that the same log verifies on either.
 * @throws UkeyError RECORD_TEXT_MALFORMED naming the field.
 */
function checkTextColumns(e: Required<AuditEntryInput>): void {
  for (const [where, text] of [["actor", e.actor], ["action", e.action], ["subjectType", e.subjectType], ["subjectId", e.subjectId]] as const) {
    if (typeof text === "string" && (!text.isWellFormed() || text.includes("\0"))) throw new UkeyError("RECORD_TEXT_MALFORMED", { params: { where } });
  }
}

/**
 * canonicalJson({action, actor, at, data, subjectId, subjectType}) with the
 * data's canonical text already made (it is stored too): the same text,
 * written in the sorted key order, without walking the data twice.
 */
function entryBody(e: Required<AuditEntryInput>, dataText: string): string {
  return `{"action":${canonicalJson(e.action)},"actor":${canonicalJson(e.actor)},"at":${canonicalJson(e.at)},"data":${dataText},`
    + `"subjectId":${canonicalJson(e.subjectId)},"subjectType":${canonicalJson(e.subjectType)}}`;
}

function toEntry(r: AuditRow): AuditEntry {
  return {
    seq: Number(r.seq), at: Number(r.at), actor: r.actor, action: r.action, subjectType: r.subject_type,
    subjectId: r.subject_id, data: JSON.parse(r.data) as Record<string, unknown>, prevHash: r.prev_hash, hash: r.hash,
  };
}

/** Recomputes a stored row's hash; a row whose data is not even JSON cannot match. */
function rowHashMatches(r: AuditRow): boolean {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(r.data) as Record<string, unknown>;
  } catch {
    return false;
  }
  const e = { at: Number(r.at), actor: r.actor, action: r.action, subjectType: r.subject_type, subjectId: r.subject_id, data };
  return auditEntryHash(Number(r.seq), r.prev_hash, e) === r.hash;
}

/** The audit head's key in a CommitState. */
const HEAD_KEY = "audit-head";

function writeHead(sql: Sql, head: { seq: number; hash: string }): Promise<number> {
  return sql.run("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", [head.seq, head.hash]);
}

/**
 * The chain's head: the value this group commit already holds (see
 * CommitState), else the row, locked until the transaction ends when `lock`.
 */
async function readHead(sql: Sql, lock = false): Promise<{ seq: number; hash: string }> {
  const pending = sql.commitState?.get<{ seq: number; hash: string }>(HEAD_KEY);
  if (pending) return pending;
  const rows = await sql.query<{ seq: number | string; hash: string }>(lock ? "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE" : "SELECT seq, hash FROM audit_head WHERE id = 1");
  const head = rows[0];
  if (!head) throw new UkeyError("AUDIT_CHAIN_BROKEN", { params: { seq: 0, reason: "the audit head row is missing" } });
  return { seq: Number(head.seq), hash: head.hash };
}

type Bad = Extract<AuditVerification, { ok: false }>;

/**
 * The append-only audit log, chained by hash. `append` locks the single
 * head row (SELECT ... FOR UPDATE), so concurrent appends from several
 * connections or servers form one chain; on the bare store each append is
 * its own transaction, inside `store.transaction` it commits with the change
 * it records.
 *
 * `verify` reports the first bad entry:
 * - removed: a seq is missing, the log ends before the head, or an entry's
 *   predecessor is gone (it links to a hash found nowhere and no longer
 *   hashes at its own seq);
 * - changed: an entry no longer matches its hash (or was rehashed, so that
 *   its successor's link points at a hash that no longer exists);
 * - reordered: an entry links to an entry that now sits after it;
 * - inserted: entries beyond the head, or entries spliced between an entry
 *   and the one that links to it (reported at the first spliced seq).
 * It never holds the whole log: it reads pages in seq order. The chain
 * cannot show a rewrite of the head row together with the log's tail: keep
 * copies of the head hash elsewhere (exports, logs) for that.
 */
export function auditLog(x: Executor): AuditLog {
  const appendMany: AuditLog["appendMany"] = (inputs) => {
    // Reject what the hash or the engines could not carry, and make the hashed text, before taking the lock.
    const entries = inputs.map((input) => {
      const entry: Required<AuditEntryInput> = {
        at: input.at, actor: input.actor, action: input.action, subjectType: input.subjectType, subjectId: input.subjectId, data: input.data ?? {},
      };
      checkTextColumns(entry);
      const dataText = canonicalJson(entry.data, "data");
      return { entry, dataText, body: entryBody(entry, dataText) };
    });
    if (entries.length === 0) return Promise.resolve([]);
    return x.atomic(async (tx) => {
      // Within one group commit the head is read once and written once (see CommitState).
      const head = await readHead(tx, true);
      let seq = head.seq;
      let prevHash = head.hash;
      const out: AuditEntry[] = [];
      for (const { entry, dataText, body } of entries) {
        seq += 1;
        const hash = hashOfBody(seq, prevHash, body);
        await tx.run(INSERT, [
          seq, entry.at, entry.actor, entry.action, entry.subjectType, entry.subjectId, dataText, prevHash, hash,
        ]);
        out.push({
          at: entry.at, actor: entry.actor, action: entry.action, subjectType: entry.subjectType, subjectId: entry.subjectId,
          data: entry.data, seq, prevHash, hash,
        });
        prevHash = hash;
      }
      // One head update for the whole run: the chain is the same as one append at a time.
      if (tx.commitState) tx.commitState.set(HEAD_KEY, { seq, hash: prevHash }, writeHead);
      else await writeHead(tx, { seq, hash: prevHash });
      return out;
    });
  };

  return {
    async append(input) {
      return (await appendMany([input]))[0]!;
    },

    appendMany,

    async list(fromSeq = 1, limit) {
      const rows = await x.sql.query<AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?`, [
        fromSeq, pageSize(limit, 100, 1000),
      ]);
      return rows.map(toEntry);
    },

    async verify() {
      let prev = { seq: 0, hash: GENESIS_HASH };
      let good = 0;
      // Entries 1..good verified; a break found late (a splice) may lie before the last of them.
      const bad = (firstBadSeq: number, reason: Bad["reason"]): Bad => ({ ok: false, entries: Math.min(good, firstBadSeq - 1), firstBadSeq, reason });
      const page = (after: number) => x.sql.query<AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`, [after, VERIFY_PAGE]);

      // Classifies an entry whose link to its predecessor is broken.
      const brokenLink = async (r: AuditRow, selfValid: boolean): Promise<Bad> => {
        const seq = Number(r.seq);
        // No index on hash (migration 6): a scan, once, and only for a log already found broken.
        const found = await x.sql.query<{ seq: number | string }>("SELECT seq FROM audit_log WHERE hash = ? ORDER BY seq LIMIT 1", [r.prev_hash]);
        const at = found[0] === undefined ? undefined : Number(found[0].seq);
        if (at !== undefined && at > seq) return bad(seq, "reordered");
        if (at !== undefined && at < prev.seq) return bad(at + 1, "inserted");
        return selfValid ? bad(prev.seq, "changed") : bad(seq, "removed");
      };

      let head = await readHead(x.sql);
      for (;;) {
        let rows = await page(prev.seq);
        if (rows.length === 0) {
          // Read the head, then look again: an append commits its entry and
          // the head together, so every entry up to this head is now visible.
          head = await readHead(x.sql);
          rows = await page(prev.seq);
          if (rows.length === 0) break;
        }
        for (const r of rows) {
          const seq = Number(r.seq);
          if (seq > head.seq) {
            // Possibly a concurrent append; judge against a fresh head.
            head = await readHead(x.sql);
            if (seq > head.seq) return bad(Math.max(head.seq + 1, prev.seq + 1), "inserted");
          }
          if (seq !== prev.seq + 1) return bad(prev.seq + 1, "removed");
          const selfValid = rowHashMatches(r);
          if (r.prev_hash !== prev.hash) return brokenLink(r, selfValid);
          if (!selfValid) return bad(seq, "changed");
          prev = { seq, hash: r.hash };
          good++;
        }
      }
      if (prev.seq < head.seq) return bad(prev.seq + 1, "removed");
      if (prev.hash !== head.hash) return bad(prev.seq, "changed");
      return { ok: true, entries: good, head: prev.hash };
    },
  };
}
