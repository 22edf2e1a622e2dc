// A bounded load generator for the renewal bench: each worker renews
// certificates through the whole order path over HTTP on loopback, signing
// the possession challenge with the old key as the agent would. Stops when
// the list is done or the time is up.
import { createPrivateKey, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";

const [port, jobsFile, secs, conns] = process.argv.slice(2);
// Keys are loaded once, as an agent holds its token session open.
const jobs = JSON.parse(readFileSync(jobsFile, "utf8")).map((j) => ({ ...j, oldKey: createPrivateKey(j.oldKey) }));
const agent = new Agent({ keepAlive: true, maxSockets: Number(conns) });
const end = Date.now() + Number(secs) * 1000;

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request({ host: "127.0.0.1", port: Number(port), path, method, agent, headers: data ? { "content-type": "application/json", "content-length": data.length } : {} }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
        else resolve(JSON.parse(text));
      });
    });
    req.on("error", reject);
    req.end(data);
  });
}

let done = 0;
let failed = 0;
let firstError;
let next = 0;
const start = Date.now();
await Promise.all(Array.from({ length: Number(conns) }, async () => {
  while (Date.now() < end && next < jobs.length) {
    const job = jobs[next++];
    try {
      const order = await call("POST", "/api/v1/orders", { certId: job.certId, channel: "web" });
      const challenge = order.challenge?.value ?? (await call("POST", `/api/v1/orders/${order.id}/challenge`)).challenge;
      const message = Buffer.from(`ukey-renew possession v1\n${order.id}\n${challenge}`, "utf8");
      const signature = sign("sha256", message, { key: job.oldKey, dsaEncoding: "der" }).toString("base64");
      await call("POST", `/api/v1/orders/${order.id}/possession`, { signature });
      await call("POST", `/api/v1/orders/${order.id}/csr`, { csr: job.csr });
      await call("POST", `/api/v1/orders/${order.id}/complete`);
      done++;
    } catch (e) {
      failed++;
      firstError ??= String(e);
    }
  }
}));
process.send({ done, failed, firstError, elapsed: (Date.now() - start) / 1000 });
agent.destroy();
