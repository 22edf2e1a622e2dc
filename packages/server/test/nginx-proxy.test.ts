import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { FastifyInstance } from "fastify";
import { systemClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { freePort, initialisedDataDir, tempDir, type TempDir } from "./support/fixtures.js";
import { repoRoot } from "./support/doc-examples.js";

// The nginx site of docs/deployment.md, as written (only its ports and certificate files are this test's),
// in front of a real server, with Debian's nginx. What it must show: the proxy keeps its connections to the
// server open. Node.js 20 accepts one new connection per turn of its event loop, so a proxy that opens one per
// request makes every request wait in the listen queue under load (docs/deployment.md, "Connections under load").

const NGINX = "/usr/sbin/nginx";
/** curl, asynchronously: the server answering nginx runs in this process, so nothing here may block it. */
const curl = async (args: string[]) => (await promisify(execFile)("curl", ["-s", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}", ...args], { encoding: "utf8" }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? "" }))).stdout;
const REQUESTS = 20;
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let accepted = 0;
let upstreamPort: number;

/** The ```nginx block of docs/deployment.md. */
function docsSite(): string {
  const text = readFileSync(resolve(repoRoot, "docs/deployment.md"), "utf8");
  const m = /```nginx\n([\s\S]*?)```/.exec(text);
  assert.ok(m, "docs/deployment.md has an nginx site");
  return m[1]!;
}

/** Starts nginx on `site` (ports and files replaced); resolves with its HTTPS and HTTP ports and a stop function. */
async function startNginx(name: string, site: string): Promise<{ https: number; http: number; stop: () => Promise<void> }> {
  const dir = t.path(name);
  mkdirSync(`${dir}/tmp`, { recursive: true });
  const https = await freePort();
  const http = await freePort();
  const replaced = site
    .replace("server 127.0.0.1:8080;", `server 127.0.0.1:${upstreamPort};`)
    .replaceAll("proxy_pass http://127.0.0.1:8080", `proxy_pass http://127.0.0.1:${upstreamPort}`)
    .replace("listen 443 ssl;", `listen 127.0.0.1:${https} ssl;`)
    .replace("listen 80;", `listen 127.0.0.1:${http};`)
    .replace("/etc/nginx/tls/pki.example.cn.pem", t.path("proxy.pem"))
    .replace("/etc/nginx/tls/pki.example.cn.key", t.path("proxy.key"));
  assert.ok(replaced.includes(`127.0.0.1:${https} ssl`) && replaced.includes(`127.0.0.1:${http};`), "the site's ports were found");
  const conf = `${dir}/nginx.conf`;
  writeFileSync(conf, [
    "daemon off;", "worker_processes 1;", `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log;`,
    ...(process.getuid?.() === 0 ? ["user root;"] : []),
    "events { worker_connections 256; }",
    "http {",
    "  access_log off;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((k) => `  ${k}_temp_path ${dir}/tmp/${k};`),
    replaced,
    "}",
  ].join("\n"));
  const check = spawnSync(NGINX, ["-t", "-p", dir, "-c", conf], { encoding: "utf8" });
  assert.equal(check.status, 0, `nginx -t: ${check.stderr}`);
  const proc: ChildProcess = spawn(NGINX, ["-p", dir, "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr!.on("data", (c: Buffer) => { stderr += c.toString(); });
  // Ready when it answers on its plain port.
  for (let i = 0; ; i++) {
    if (await curl([`http://127.0.0.1:${http}/crl/issuing.crl`]) === "200") break;
    if (i > 100 || proc.exitCode !== null) throw new Error(`nginx did not start: ${stderr}${readFileSync(`${dir}/error.log`, "utf8")}`);
    await new Promise((r2) => setTimeout(r2, 100));
  }
  return {
    https, http,
    stop: () => new Promise<void>((done) => { proc.once("exit", () => done()); proc.kill("SIGQUIT"); }),
  };
}

/** `n` requests through the proxy, each on a new connection to nginx (a new curl), as holders and relying parties arrive. */
async function throughProxy(https: number, http: number, n: number): Promise<string[]> {
  const statuses: string[] = [];
  for (let i = 0; i < n; i++) {
    statuses.push(i % 2 === 0
      ? await curl(["-k", "--resolve", `pki.example.cn:${https}:127.0.0.1`, `https://pki.example.cn:${https}/healthz`])
      : await curl([`http://127.0.0.1:${http}/crl/issuing.crl`]));
  }
  return statuses;
}

before(async () => {
  if (spawnSync(NGINX, ["-v"]).status !== 0) throw new Error(`${NGINX} is missing: scripts/ensure-system-deps.sh installs Debian's nginx-light`);
  t = tempDir("ukey-nginx-");
  const { dataDir, env } = initialisedDataDir(t);
  const keys = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-subj", "/CN=pki.example.cn", "-keyout", t.path("proxy.key"), "-out", t.path("proxy.pem")], { encoding: "utf8" });
  assert.equal(keys.status, 0, keys.stderr);
  ctx = await openServerContext(dataDir, env, systemClock);
  app = await buildApp(ctx);
  app.server.on("connection", () => { accepted += 1; });
  await app.listen({ host: "127.0.0.1", port: 0 });
  upstreamPort = (app.server.address() as { port: number }).port;
});

after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

test("the nginx site of docs/deployment.md keeps its connections to the server open", async () => {
  // Counted from before nginx starts: its readiness probe's connection is the one the requests reuse.
  const before = accepted;
  const nginx = await startNginx("kept", docsSite());
  try {
    const statuses = await throughProxy(nginx.https, nginx.http, REQUESTS);
    assert.deepEqual(new Set(statuses), new Set(["200"]), `every request answered: ${statuses.join(" ")}`);
    const opened = accepted - before;
    process.stdout.write(`# through the docs' nginx site: ${REQUESTS} requests (and nginx's readiness probes) on as many client connections, ${opened} connection(s) to the server\n`);
    assert.ok(opened >= 1 && opened <= 2, `${opened} connections to the server for ${REQUESTS} requests`);
  } finally {
    await nginx.stop();
  }
});

test("without the upstream keepalive lines, the same site opens a connection to the server per request (what the docs warn of)", async () => {
  const site = docsSite()
    .replace(/upstream ukey_renew \{[\s\S]*?\}\n/, "")
    .replaceAll("http://ukey_renew", "http://127.0.0.1:8080")
    .replace(/^\s*proxy_http_version 1\.1;.*\n/gm, "")
    .replaceAll(/proxy_set_header Connection "";\s*(#.*)?/g, "");
  assert.doesNotMatch(site, /keepalive|Connection ""/);
  const nginx = await startNginx("per-request", site);
  try {
    const before = accepted;
    const statuses = await throughProxy(nginx.https, nginx.http, REQUESTS);
    assert.deepEqual(new Set(statuses), new Set(["200"]));
    assert.equal(accepted - before, REQUESTS);
  } finally {
    await nginx.stop();
  }
});
