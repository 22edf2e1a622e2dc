// OCSP over HTTP (issue 17): GET and POST from pre-signed responses, beside the HTTP bound measured on
// the same server and connections (a static route answering bytes of the same size), then the same with
// a million more certificates in the embedded database, to show the rate does not depend on table size;
// on PostgreSQL (opt-in) the same at ten million.
//
//   UKEY_BENCH_OCSP_CERTS     issued certificates, the small table (default 1000; this file run alone)
//   UKEY_BENCH_OCSP_ROWS      certificates added to the embedded database (default 1000000; 0: the small table only)
//   UKEY_BENCH_OCSP_POSTGRES  1: the same on the private PostgreSQL test cluster (scripts/ensure-postgres.sh)
//   UKEY_BENCH_OCSP_PG_ROWS   certificates added on PostgreSQL (default 10000000)
import "reflect-metadata";
import { execFileSync, fork } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalCertId } from "@ukey/ca";
import { buildApp, type ServerContext } from "@ukey/server";
import { openBenchContext } from "./renewal-bench.js";
import { databaseBytes, fillCertificates, withBenchPostgres } from "./bench-database.js";

interface Totals { ok: number; failed: number; ms: number; bytes: number }

/** DER of an RFC 5019 request for one CertID (no nonce, no extensions). */
function ocspRequest(certIdDer: Buffer): Buffer {
  const tlv = (tag: number, body: Buffer): Buffer => {
    const n = body.length;
    const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
    return Buffer.concat([Buffer.from([tag]), len, body]);
  };
  return tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x30, certIdDer))));
}

const conns = 32;

async function run(port: number, dir: string, name: string, plan: object): Promise<Record<string, Totals>> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(plan));
  const client = fork(join(import.meta.dirname, "ocsp-load-client.mjs"), [String(port), file, String(conns)], { stdio: ["ignore", "pipe", "inherit", "ipc"] });
  return new Promise((resolve) => client.on("message", (m) => resolve(m as Record<string, Totals>)));
}

const perSecond = (t: Totals) => t.ok / (t.ms / 1000);
const line = (label: string, value: string) => console.log(`${label.padEnd(48)} ${value}`);

/** Serials of up to `n` issued certificates of the bench's issuing CA (their responses were signed at issuance). */
async function sampleSerials(ctx: ServerContext, n: number): Promise<string[]> {
  const rows = await ctx.store.db.query<{ serial: string }>(
    "SELECT serial FROM certificates WHERE issuer_key_id = ? AND status = 'active' LIMIT ?", [ctx.ca.issuerKeyId, n]);
  return rows.map((r) => r.serial);
}

/**
 * Inserts `count` active filler certificates with stored responses (serials "f0" and 30 hex digits, in
 * canonical form), generated inside the database in chunks of 200,000: ten million rows on PostgreSQL in
 * minutes, where rows bound from here would take an hour. The responses are placeholders refreshed in
 * 12 hours, so nothing signs them during the bench; the measured sample gets real ones. On PostgreSQL the
 * table is vacuumed after (counted in the seconds returned).
 */
export async function fillActiveForBench(ctx: ServerContext, count: number): Promise<number> {
  return fillCertificates(ctx.store.db, ctx.ca.issuerKeyId, count, { serial: (s) => `'f0' || ${s.hex(30)}`, revoked: false, vacuum: true });
}

/** Serves `reference` on its own port: GET and POST modes for its sampled certificates, and its row count. */
async function referenceModes(reference: ServerContext, gets: (reqs: Buffer[]) => string[]) {
  await reference.ocsp.refreshDue();
  const app = await buildApp(reference);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const reqs = (await sampleSerials(reference, 1000)).map((s) => ocspRequest(canonicalCertId(reference.ca.issuing, s).der));
  const n = await reference.store.db.query<{ n: number | string }>("SELECT COUNT(*) AS n FROM certificates");
  return {
    rows: Number(n[0]!.n).toLocaleString("en"),
    modes: [
      { name: "smallGet", method: "GET", port, paths: gets(reqs) },
      { name: "smallPost", method: "POST", port, bodies: reqs.map((b) => b.toString("base64")) },
    ],
    close: () => app.close(),
  };
}

/**
 * Prints OCSP GET and POST rates over HTTP and their ratios to the HTTP bound of the same server, then
 * (when `fillRows` > 0) the rates again with that many more certificates in the database (embedded or
 * PostgreSQL, whichever `ctx` is on), and the ratio between the two (the claim: at least 0.90, the rate
 * does not depend on table size). Given `reference`, a context of the same engine whose database keeps
 * the small table, its server is measured in the same slices as the big table's, and the ratio between the
 * two needs no bound: on PostgreSQL an OCSP answer waits for the database server, another process, which
 * load from elsewhere slows unlike the HTTP bound. Throws when the big-table run had to sign on the request path.
 */
export async function measureOcsp(ctx: ServerContext, dir: string, seconds: number, fillRows: number, reference?: ServerContext): Promise<void> {
  await ctx.ocsp.refreshDue();
  const app = await buildApp(ctx);
  let staticBody = Buffer.alloc(0);
  // The HTTP bound: the same hooks (limits, logging, headers) and connections, no database, no OCSP.
  app.get("/bench/static", async (_req, reply) => reply.type("application/ocsp-response").header("cache-control", "max-age=600").send(staticBody));
  await app.listen({ host: "127.0.0.1", port: 0 });
  try {
    const port = (app.server.address() as { port: number }).port;
    const requestsFor = (serials: string[]) => serials.map((s) => ocspRequest(canonicalCertId(ctx.ca.issuing, s).der));
    const sampleFew = await sampleSerials(ctx, 1000);
    const few = requestsFor(sampleFew);
    const first = await ctx.ocsp.answer(few[0]!);
    if (!first.cache) throw new Error("the bench's certificates have no pre-signed response");
    staticBody = Buffer.alloc(first.der.length, 0x30);
    const gets = (reqs: Buffer[]) => reqs.map((r) => `/ocsp/${encodeURIComponent(r.toString("base64"))}`);
    const slices = Math.max(3, Math.round(seconds));
    const sliceMs = 400;
    const before = { ...ctx.ocsp.counters };
    const r = await run(port, dir, "ocsp-few", {
      slices, sliceMs,
      modes: [
        { name: "static", method: "GET", paths: ["/bench/static"] },
        { name: "get", method: "GET", paths: gets(few) },
        { name: "post", method: "POST", bodies: few.map((b) => b.toString("base64")) },
      ],
    });
    const bound = perSecond(r.static!);
    const smallRatio = { get: perSecond(r.get!) / bound, post: perSecond(r.post!) / bound };
    line("raw: static route, same size bytes (HTTP bound)", `${bound.toFixed(0).padStart(8)} /s   ${staticBody.length} bytes, keep-alive, ${conns} conns`);
    for (const m of ["get", "post"] as const) {
      line(`OCSP ${m.toUpperCase()} over HTTP (pre-signed, ${few.length} certs)`,
        `${perSecond(r[m]!).toFixed(0).padStart(8)} /s   ratio to HTTP bound ${(perSecond(r[m]!) / bound).toFixed(2)} (goal >= 0.50)   failed ${r[m]!.failed}`);
    }
    const live = ctx.ocsp.counters.signedLive - before.signedLive;
    line("  of which signed on the request path", `${live.toString().padStart(8)}     (of ${r.get!.ok + r.post!.ok})`);
    if (fillRows <= 0) return;

    const fillSeconds = await fillActiveForBench(ctx, fillRows);
    const dbBytes = await databaseBytes(ctx.store.db);
    const engine = ctx.store.db.engine === "postgres" ? "PostgreSQL" : "embedded";
    const total = await ctx.store.db.query<{ n: number | string }>("SELECT COUNT(*) AS n FROM certificates");
    // Real responses for a sample spread over the big table, so that reads touch pages all over it.
    const spread = (await ctx.store.db.query<{ serial: string }>(
      "SELECT serial FROM certificates WHERE serial LIKE 'f%' ORDER BY RANDOM() LIMIT 1000")).map((x) => x.serial);
    for (const s of spread) await ctx.store.certificates.storeOcsp(s, await ctx.ocsp.sign(s, { status: "good" }, new Date()), null);
    // Side by side in one run: the static route, the few certificates measured above (now in a big
    // table), and the spread sample. Each ratio is to the static route of the same slices.
    const liveBefore = ctx.ocsp.counters.signedLive + (reference?.ocsp.counters.signedLive ?? 0);
    const spreadRequests = requestsFor(spread);
    const side = reference ? await referenceModes(reference, gets) : undefined;
    let r2: Record<string, Totals>;
    try {
      r2 = await run(port, dir, "ocsp-many", {
        slices, sliceMs,
        modes: [
          { name: "static", method: "GET", paths: ["/bench/static"] },
          { name: "few", method: "GET", paths: gets(few) },
          { name: "many", method: "GET", paths: gets(spreadRequests) },
          { name: "manyPost", method: "POST", bodies: spreadRequests.map((b) => b.toString("base64")) },
          ...(side?.modes ?? []),
        ],
      });
    } finally {
      await side?.close();
    }
    const live2 = ctx.ocsp.counters.signedLive + (reference?.ocsp.counters.signedLive ?? 0) - liveBefore;
    const rows = Number(total[0]!.n).toLocaleString("en");
    const fewRatio = perSecond(r2.few!) / perSecond(r2.static!);
    const manyRatio = perSecond(r2.many!) / perSecond(r2.static!);
    line(`raw: static route (HTTP bound), ${rows} rows`, `${perSecond(r2.static!).toFixed(0).padStart(8)} /s`);
    line(`OCSP GET, ${few.length} certs clustered, ${rows} rows`,
      `${perSecond(r2.few!).toFixed(0).padStart(8)} /s   ratio to HTTP bound ${fewRatio.toFixed(2)}   failed ${r2.few!.failed}`);
    line(`OCSP GET, ${spread.length} certs spread over ${rows} rows`,
      `${perSecond(r2.many!).toFixed(0).padStart(8)} /s   ratio to HTTP bound ${manyRatio.toFixed(2)}   spread/clustered ${(manyRatio / fewRatio).toFixed(2)} (goal >= 0.90)   failed ${r2.many!.failed}`);
    const manyPostRatio = perSecond(r2.manyPost!) / perSecond(r2.static!);
    line(`OCSP POST, ${spread.length} certs spread over ${rows} rows`,
      `${perSecond(r2.manyPost!).toFixed(0).padStart(8)} /s   ratio to HTTP bound ${manyPostRatio.toFixed(2)}   failed ${r2.manyPost!.failed}`);
    line(`  ${rows} rows / ${few.length} certs (each to its bound)`,
      `GET ${(manyRatio / smallRatio.get).toFixed(2)}, POST ${(manyPostRatio / smallRatio.post).toFixed(2)} (goal >= 0.90)`);
    if (side) {
      line(`  side by side: ${rows} rows / ${side.rows} rows`,
        `GET ${(perSecond(r2.many!) / perSecond(r2.smallGet!)).toFixed(2)}, POST ${(perSecond(r2.manyPost!) / perSecond(r2.smallPost!)).toFixed(2)} (goal >= 0.90; small table ${perSecond(r2.smallGet!).toFixed(0)} GET /s, ${perSecond(r2.smallPost!).toFixed(0)} POST /s, failed ${r2.smallGet!.failed + r2.smallPost!.failed})`);
    }
    line("  of which signed on the request path", `${live2.toString().padStart(8)}     (of ${r2.few!.ok + r2.many!.ok + r2.manyPost!.ok + (side ? r2.smallGet!.ok + r2.smallPost!.ok : 0)}; ${engine}; ${fillRows.toLocaleString("en")} rows added in ${fillSeconds.toFixed(0)} s; database ${(dbBytes / 1048576).toFixed(0)} MB)`);
    // The row lookup alone, in CPU time (steadier than rates on a shared machine): the clustered and the
    // spread sample in alternating slices, each through the store's statement as the request path runs it.
    const lookup = { few: { n: 0, us: 0 }, many: { n: 0, us: 0 } };
    for (let slice = 0; slice < 6; slice++) {
      for (const [name, serials] of [["few", sampleFew], ["many", spread]] as const) {
        const cpu = process.cpuUsage();
        for (const s of serials) await ctx.store.certificates.ocspState(s, ctx.ca.issuerKeyId);
        const used = process.cpuUsage(cpu);
        lookup[name].n += serials.length;
        lookup[name].us += used.user + used.system;
      }
    }
    const perLookup = (x: { n: number; us: number }) => x.us / x.n;
    line("  row lookup (store, CPU per lookup)",
      `clustered ${perLookup(lookup.few).toFixed(1)} us, spread ${perLookup(lookup.many).toFixed(1)} us: ratio ${(perLookup(lookup.many) / perLookup(lookup.few)).toFixed(2)}`);
    // A sample the cache cannot answer would measure the CA key instead of the table.
    if (live2 > 0) throw new Error(`${live2} OCSP answers of the big-table run were signed on the request path: the sample is not pre-signed`);
  } finally {
    await app.close();
  }
}

/**
 * A bench context (in `dir`, on PostgreSQL when `databaseUrl` is given) with UKEY_BENCH_OCSP_CERTS (default
 * 1000) issued certificates, whose responses were signed at issuance.
 */
async function openOcspContext(dir: string, databaseUrl?: string): Promise<ServerContext> {
  const ctx = await openBenchContext(dir, "p256", databaseUrl ? { env: { UKEY_DATABASE_URL: databaseUrl } } : {});
  try {
    const csrs: Buffer[] = [];
    for (let i = 0; i < 8; i++) {
      const key = join(dir, `k${i}.pem`);
      const out = join(dir, `c${i}.der`);
      execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", `/CN=o${i}`, "-outform", "DER", "-out", out], { stdio: "pipe" });
      csrs.push(readFileSync(out));
    }
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < ocspCerts()) await ctx.issuance.issue({ holderId: "B1", profileId: "personal", csr: csrs[next++ % csrs.length]!, actor: "bench" });
    }));
    return ctx;
  } catch (e) {
    await ctx.close();
    throw e;
  }
}

const ocspCerts = () => Number(process.env.UKEY_BENCH_OCSP_CERTS ?? 1000);
const banner = (engine: string) => console.log(`ukey-renew OCSP bench, ${engine} (P-256 CA key; ${ocspCerts()} issued certificates; node ${process.version})`);

/**
 * On the private PostgreSQL test cluster (scripts/ensure-postgres.sh), in two databases made for it and
 * dropped after: measureOcsp at the small table and with UKEY_BENCH_OCSP_PG_ROWS (default 10,000,000) more
 * rows, and side by side with a second server whose database keeps the small table.
 */
export async function measureOcspPostgres(seconds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "ukey-ocsp-pg-bench-"));
  try {
    // Two databases on the one cluster: the big one, and one that keeps the small table for the side-by-side run.
    await withBenchPostgres((big) => withBenchPostgres(async (small) => {
      mkdirSync(join(dir, "big"));
      mkdirSync(join(dir, "small"));
      const ctx = await openOcspContext(join(dir, "big"), big);
      try {
        const reference = await openOcspContext(join(dir, "small"), small);
        try {
          banner("PostgreSQL");
          await measureOcsp(ctx, join(dir, "big"), seconds, Number(process.env.UKEY_BENCH_OCSP_PG_ROWS ?? 10_000_000), reference);
        } finally {
          await reference.close();
        }
      } finally {
        await ctx.close();
      }
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * This file alone (node --import tsx bench/ocsp-bench.ts): the embedded database with UKEY_BENCH_OCSP_ROWS
 * (default 1,000,000) rows added, then PostgreSQL when UKEY_BENCH_OCSP_POSTGRES=1. With the argument
 * "postgres" (as scripts/bench.sh runs it, after run-bench.ts measured the embedded one): PostgreSQL only.
 */
async function main(): Promise<void> {
  const seconds = Number(process.env.UKEY_BENCH_SECONDS ?? 3);
  if (process.argv[2] !== "postgres") {
    const dir = mkdtempSync(join(tmpdir(), "ukey-ocsp-bench-"));
    try {
      const ctx = await openOcspContext(dir);
      try {
        banner("embedded");
        await measureOcsp(ctx, dir, seconds, Number(process.env.UKEY_BENCH_OCSP_ROWS ?? 1_000_000));
      } finally {
        await ctx.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (process.argv[2] === "postgres" || process.env.UKEY_BENCH_OCSP_POSTGRES === "1") await measureOcspPostgres(seconds);
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
