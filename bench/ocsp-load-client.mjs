// A bounded OCSP load generator for the bench: loopback only, stops by itself.
// argv: port, plan file (JSON), connections. The plan lists modes, each a method, a path or a list of
// paths (GET) or request bodies in base64 (POST); the modes are run in alternating slices over the same
// keep-alive connections, so that each ratio compares like with like on this shared machine. A mode may name
// its own port (another server of the same process, e.g. one on a small database beside one on a big one).
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";

const [port, planFile, conns] = process.argv.slice(2);
/** @type {{ slices: number; sliceMs: number; modes: Array<{ name: string; method: "GET" | "POST"; port?: number; paths?: string[]; bodies?: string[] }> }} */
const plan = JSON.parse(readFileSync(planFile, "utf8"));
const agent = new Agent({ keepAlive: true, maxSockets: Number(conns) });
const totals = Object.fromEntries(plan.modes.map((m) => [m.name, { ok: 0, failed: 0, ms: 0, bytes: 0 }]));

function one(mode, i) {
  return new Promise((resolve) => {
    const t = totals[mode.name];
    const body = mode.method === "POST" ? mode.buffers[i % mode.buffers.length] : undefined;
    const path = mode.method === "GET" ? mode.paths[i % mode.paths.length] : "/ocsp";
    const headers = body ? { "content-type": "application/ocsp-request", "content-length": body.length } : {};
    const req = request({ host: "127.0.0.1", port: Number(mode.port ?? port), path, method: mode.method, agent, headers }, (res) => {
      res.on("data", (d) => { t.bytes += d.length; });
      res.on("end", () => { if (res.statusCode === 200) t.ok++; else t.failed++; resolve(); });
    });
    req.on("error", () => { t.failed++; resolve(); });
    req.end(body);
  });
}

for (const m of plan.modes) if (m.bodies) m.buffers = m.bodies.map((b) => Buffer.from(b, "base64"));
for (let s = 0; s < plan.slices; s++) {
  for (const mode of plan.modes) {
    const start = performance.now();
    const end = start + plan.sliceMs;
    let i = Math.floor(Math.random() * 1e6);
    await Promise.all(Array.from({ length: Number(conns) }, async () => { while (performance.now() < end) await one(mode, i++); }));
    totals[mode.name].ms += performance.now() - start;
  }
}
process.send(totals);
agent.destroy();
