// A bounded load generator for the renewal bench: each agent renews
// certificates through the whole order path over HTTP on loopback, signing
// the possession challenge with the old key as the agent would. Stops when
// the list is done or the time is up.
//
// It shares this machine's cores with the server, so it is kept cheap: one
// keep-alive connection per agent speaking plain HTTP/1.1 over a socket
// (requests written in one piece, answers read by Content-Length), keys
// loaded and CSR bodies serialised before the clock starts, and JSON parsed
// only for the answer that carries the order id and challenge (the
// credential is picked out of the possession answer). Every answer's
// status is still checked.
import { createPrivateKey, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { performance } from "node:perf_hooks";

const [port, jobsFile, secs, conns, warmUp = "0"] = process.argv.slice(2);
// Keys are loaded once, as an agent holds its token session open.
const jobs = JSON.parse(readFileSync(jobsFile, "utf8")).map((j) => ({
  startBody: JSON.stringify({ certId: j.certId, channel: "web" }),
  csrBody: JSON.stringify({ csr: j.csr }),
  oldKey: createPrivateKey(j.oldKey),
}));

/** One agent's keep-alive connection; one request at a time, as an agent waits for each answer. */
class Connection {
  constructor() {
    this.socket = connect({ host: "127.0.0.1", port: Number(port) });
    this.socket.setNoDelay(true);
    this.chunks = [];
    this.size = 0;
    this.waiting = undefined;
    this.socket.on("data", (c) => this.onData(c));
    this.socket.on("error", (e) => this.fail(e));
    this.socket.on("close", () => this.fail(new Error("connection closed by the server")));
  }

  request(method, path, body = "", credential = undefined) {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject, method, path };
      const head = `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${credential ? `authorization: Bearer ${credential}\r\n` : ""}`
        + (body ? `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n` : "content-length: 0\r\n\r\n");
      this.socket.write(head + body);
    });
  }

  onData(chunk) {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const buf = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.size);
    const headEnd = buf.indexOf("\r\n\r\n");
    if (headEnd < 0) return this.keep(buf);
    const head = buf.toString("latin1", 0, headEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) return this.fail(new Error(`answer without content-length: ${head.slice(0, 200)}`));
    const end = headEnd + 4 + Number(length[1]);
    if (buf.length < end) return this.keep(buf);
    if (buf.length > end) return this.fail(new Error("an answer arrived that nobody asked for"));
    this.chunks = [];
    this.size = 0;
    const w = this.waiting;
    this.waiting = undefined;
    const status = Number(head.slice(9, 12));
    const inServer = /\r\nserver-timing: *app;dur=([\d.]+)/i.exec(head);
    this.serverMs = inServer ? Number(inServer[1]) : NaN;
    const body = buf.subarray(headEnd + 4, end);
    if (status >= 300) w?.reject(new Error(`${w.method} ${w.path}: ${status} ${body.toString("utf8", 0, 300)}`));
    else w?.resolve(body);
  }

  keep(buf) {
    this.chunks = [buf];
  }

  fail(e) {
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(e);
  }

  close() {
    this.socket.removeAllListeners("close");
    this.socket.destroy();
  }
}

let done = 0;
let failed = 0;
/** Milliseconds from a measured renewal's first request to its last answer. */
let latencies = [];
/** Per measured renewal, the milliseconds of each of its four requests (start, possession, csr, complete), beside `latencies`. */
let steps = [];
/** Per measured renewal, the server's own milliseconds of each of its four requests (Server-Timing), beside `steps`. */
let serverSteps = [];
let firstError;
let next = 0;
/** A new connection, once it is open. */
const opened = () => new Promise((resolve, reject) => {
  const c = new Connection();
  c.socket.once("connect", () => resolve(c));
  c.socket.once("error", reject);
});
// UKEY_BENCH_CONNECTION_PER_RENEWAL=1: each renewal on a connection of its own, opened when it starts and
// closed after it (as one holder's agent after another), the connection's opening counted in the start.
const perRenewal = process.env.UKEY_BENCH_CONNECTION_PER_RENEWAL === "1";
const connections = perRenewal ? Array.from({ length: Number(conns) }, () => undefined) : await Promise.all(Array.from({ length: Number(conns) }, opened));
// Every connection is served once (GET /healthz) before the load starts. A connection the kernel
// completed is not yet one the server accepted: Node 20's libuv accepts one connection per turn of the
// event loop, so under load a connection opened at the start waited seconds in the listen queue and its
// first renewal made the tail (docs/performance.md). The bench measures agents whose connections are
// open; UKEY_BENCH_COLD_CONNECTIONS=1 skips this to show the difference.
if (!perRenewal && process.env.UKEY_BENCH_COLD_CONNECTIONS !== "1") await Promise.all(connections.map((c) => c.request("GET", "/healthz")));
// A warm-up (not counted) lets the server reach its steady state first: compiled code, and the
// signature worker it starts under load.
const warmUpMs = Number(warmUp) * 1000;
let measuring = false;
let start = Date.now();
let end = start + warmUpMs + Number(secs) * 1000;
let cpuAtStart = process.cpuUsage();
const warmUpTimer = setTimeout(() => {
  measuring = true;
  done = 0;
  failed = 0;
  latencies = [];
  steps = [];
  serverSteps = [];
  firstError = undefined;
  // The parent starts counting its own CPU now; ours is counted from here too.
  process.send({ ready: true });
  cpuAtStart = process.cpuUsage();
  start = Date.now();
  end = start + Number(secs) * 1000;
}, warmUpMs);
await Promise.all(connections.map(async (kept) => {
  while (Date.now() < end && next < jobs.length) {
    const job = jobs[next++];
    const began = performance.now();
    const marks = [began];
    const inServer = [];
    let c = kept;
    try {
      if (perRenewal) c = await opened();
      const order = JSON.parse((await c.request("POST", "/api/v1/orders", job.startBody)).toString("utf8"));
      marks.push(performance.now());
      inServer.push(c.serverMs);
      const challenge = order.challenge.value;
      const message = Buffer.from(`ukey-renew possession v1\n${order.id}\n${challenge}`, "utf8");
      const signature = sign("sha256", message, { key: job.oldKey, dsaEncoding: "der" }).toString("base64");
      const proved = (await c.request("POST", `/api/v1/orders/${order.id}/possession`, `{"challenge":"${challenge}","signature":"${signature}"}`)).toString("utf8");
      marks.push(performance.now());
      inServer.push(c.serverMs);
      // The credential is the one value read from this answer; the rest of it is not parsed.
      const credential = /"credential":\{"token":"([^"]+)"/.exec(proved)?.[1];
      await c.request("POST", `/api/v1/orders/${order.id}/csr`, job.csrBody, credential);
      marks.push(performance.now());
      inServer.push(c.serverMs);
      await c.request("POST", `/api/v1/orders/${order.id}/complete`, "", credential);
      marks.push(performance.now());
      inServer.push(c.serverMs);
      done++;
      if (measuring) {
        latencies.push(marks[4] - began);
        steps.push([marks[1] - marks[0], marks[2] - marks[1], marks[3] - marks[2], marks[4] - marks[3]]);
        serverSteps.push(inServer);
      }
    } catch (e) {
      failed++;
      firstError ??= String(e);
    } finally {
      if (perRenewal) c.close();
    }
  }
}));
if (!measuring) {
  // The list ran out during the warm-up: nothing was measured.
  clearTimeout(warmUpTimer);
  process.send({ ready: true });
  cpuAtStart = process.cpuUsage();
  start = Date.now();
  done = 0;
}
const elapsed = (Date.now() - start) / 1000;
const cpu = process.cpuUsage(cpuAtStart);
// Where the time of the slowest renewals went: the mean of each request's time over the slowest 1%
// of renewals, beside the same over the middle renewals (the 45th to 55th percentile).
const byLatency = latencies.map((_, i) => i).sort((a, b) => latencies[a] - latencies[b]);
const meanSteps = (from, to, of = steps) => {
  const picked = byLatency.slice(Math.floor(from * byLatency.length), Math.max(Math.floor(from * byLatency.length) + 1, Math.floor(to * byLatency.length)));
  return [0, 1, 2, 3].map((k) => (picked.length ? picked.reduce((sum, i) => sum + of[i][k], 0) / picked.length : NaN));
};
latencies.sort((a, b) => a - b);
const percentile = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : NaN);
process.send({
  done, failed, firstError, elapsed, cpuMicros: cpu.user + cpu.system, p50: percentile(0.5), p99: percentile(0.99), p999: percentile(0.999),
  slowestSteps: meanSteps(0.99, 1), middleSteps: meanSteps(0.45, 0.55),
  slowestInServer: meanSteps(0.99, 1, serverSteps), middleInServer: meanSteps(0.45, 0.55, serverSteps),
});
if (!perRenewal) for (const c of connections) c.close();
