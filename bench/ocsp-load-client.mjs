// A bounded OCSP load generator for the bench: loopback only, stops by itself.
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";

const [port, reqFile, secs, conns] = process.argv.slice(2);
const body = readFileSync(reqFile);
const agent = new Agent({ keepAlive: true, maxSockets: Number(conns) });
const end = Date.now() + Number(secs) * 1000;
let ok = 0;
let failed = 0;
const start = Date.now();
function one() {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port: Number(port), path: "/ocsp", method: "POST", agent, headers: { "content-type": "application/ocsp-request", "content-length": body.length } }, (res) => {
      res.resume();
      res.on("end", () => { if (res.statusCode === 200) ok++; else failed++; resolve(); });
    });
    req.on("error", () => { failed++; resolve(); });
    req.end(body);
  });
}
await Promise.all(Array.from({ length: Number(conns) }, async () => { while (Date.now() < end) await one(); }));
process.send({ ok, failed, elapsed: (Date.now() - start) / 1000 });
agent.destroy();
