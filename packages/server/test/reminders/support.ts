// Real parts for the reminder tests: a data directory initialised by the
// real CLI, a server context on it (SQLite, or PostgreSQL when a URL is
// given) with a fixed clock, and holders and certificates written through
// the store as an import would.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fixedClock, startOfPolicyDay, policyDay } from "@ukey/policy";
import type { CertificateRecord, HolderRecord, Store } from "@ukey/store";
import { openServerContext, type ServerContext } from "../../src/server-context.js";
import { runUkeyServer, tempDir, type TempDir } from "../support/fixtures.js";

export const DAY = 86_400_000;

/** 09:00 CST of the CST day `day` (days since the epoch). */
export const nineAm = (day: number): Date => new Date(startOfPolicyDay(day).getTime() + 9 * 3_600_000);

export interface ReminderWorld {
  t: TempDir;
  dataDir: string;
  env: Record<string, string>;
  clock: ReturnType<typeof fixedClock>;
  ctx: ServerContext;
  /** Opens another context on the same data directory (a restart, or a second instance on PostgreSQL). */
  reopen(): Promise<ServerContext>;
  /** The demo outbox file's lines (what SMS and mail would have carried). */
  outbox(): Array<{ channel: string; to: string; text: string; purpose: string; holderId: string | null }>;
  close(): Promise<void>;
}

/** A data directory with its config changed by `config`, and a context on it at `at`. */
export async function reminderWorld(opts: {
  at: Date; config?: (c: Record<string, unknown>) => void; env?: Record<string, string>; t?: TempDir;
  /** Runs the CLI on the data directory before the context locks it. */
  beforeOpen?: (dataDir: string, env: Record<string, string>) => void;
}): Promise<ReminderWorld> {
  const t = opts.t ?? tempDir("ukey-reminders-");
  const pass = t.write("ca-passphrase", "reminders passphrase 0123\n");
  const env = { UKEY_CA_PASSPHRASE_FILE: pass, ...opts.env };
  const dataDir = t.path("data");
  const init = runUkeyServer(["init", "--data-dir", dataDir, "--json"], env);
  if (init.status !== 0) throw new Error(`init failed: ${init.stdout}${init.stderr}`);
  const file = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  opts.config?.(cfg);
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  opts.beforeOpen?.(dataDir, env);
  const clock = fixedClock(opts.at);
  const opened: ServerContext[] = [];
  const reopen = async () => { const c = await openServerContext(dataDir, env, clock); opened.push(c); return c; };
  const ctx = await reopen();
  return {
    t, dataDir, env, clock, ctx, reopen,
    outbox: () => {
      let text = "";
      try { text = readFileSync(`${dataDir}/outbox.jsonl`, "utf8"); } catch { return []; }
      return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as ReturnType<ReminderWorld["outbox"]>[number]);
    },
    close: async () => {
      for (const c of opened) await c.close().catch(() => undefined);
      t.cleanup();
    },
  };
}

let n = 0;

/** A holder written straight to the store. */
export async function holder(store: Store, over: Partial<HolderRecord> = {}): Promise<HolderRecord> {
  const h: HolderRecord = {
    id: `H${++n}-${randomBytes(2).toString("hex")}`, kind: "person", name: `持有人 ${n}`, idType: "resident-id", idHash: randomBytes(32).toString("hex"),
    idMasked: "1101**********1234", phone: "15900000005", email: null, organisationId: null, createdAt: 0, ...over,
  };
  await store.holders.insert(h);
  return h;
}

/** A certificate (as an import writes one) expiring at 10:00 CST of the CST day `expiryDay`. */
export async function certificate(store: Store, holderId: string, expiryDay: number, over: Partial<CertificateRecord> = {}): Promise<CertificateRecord> {
  const notAfter = startOfPolicyDay(expiryDay).getTime() + 10 * 3_600_000;
  const c: Omit<CertificateRecord, "imported"> = {
    serial: randomBytes(16).toString("hex").replace(/^0/, "1"), issuerKeyId: "aa11", issuerDn: "CN=Test CA", subjectDn: `CN=Zhang San ${++n},O=Demo`,
    sans: [], notBefore: notAfter - 1825 * DAY, notAfter, status: "active", revocationReason: null, revokedAt: null,
    spkiSha256: randomBytes(32).toString("hex"), kind: "hardware", tokenSerial: null, holderId, profileId: "personal",
    der: Buffer.from([0x30, 0x00]), createdAt: 0, updatedAt: 0, ...over,
  };
  await store.certificates.insertImported(c);
  return { ...c, imported: true };
}

export { policyDay };
