// A bounded flood of bogus operator sign-ins for the flood test: `clients`
// keep-alive connections, each from its own loopback address (127.0.0.2,
// 127.0.0.3, ...), each sending a sign-in with a random id and password as
// soon as the previous one is answered, at most `perSecond` a second, while
// the parent has said "flood" (until "calm"), until it says "stop" or
// `maxSeconds` pass. Reports how many answers came with each status and
// problem code ("503 SIGN_IN_BUSY": 812, ...), and every 50 ms how many
// answers have come so far ({ answered }). Only ever talks to 127.0.0.1.
import { Agent, request } from "node:http";
import { randomBytes } from "node:crypto";

const [port, clients, perSecond, maxSeconds] = process.argv.slice(2).map(Number);
const statuses = {};
let answered = 0;
let stopping = false;
let flooding = false;
const deadline = Date.now() + maxSeconds * 1000;
process.on("message", (m) => {
  if (m === "stop") stopping = true;
  if (m === "flood") flooding = true;
  if (m === "calm") flooding = false;
});

function signIn(agent, localAddress) {
  const body = JSON.stringify({ operatorId: `nobody-${randomBytes(4).toString("hex")}`, password: randomBytes(12).toString("hex"), totp: "000000" });
  return new Promise((resolve) => {
    const req = request({
      host: "127.0.0.1", port, path: "/api/v1/admin/sign-in", method: "POST", agent, localAddress,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        let code = "";
        try {
          code = JSON.parse(Buffer.concat(chunks).toString("utf8")).code ?? "";
        } catch { /* not a problem document */ }
        resolve(`${res.statusCode} ${code}`.trim());
      });
    });
    req.on("error", () => resolve("error"));
    req.end(body);
  });
}

async function client(i) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const localAddress = `127.0.0.${2 + i}`;
  while (!stopping && Date.now() < deadline) {
    if (!flooding) {
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    const started = Date.now();
    const status = await signIn(agent, localAddress);
    statuses[status] = (statuses[status] ?? 0) + 1;
    answered++;
    const wait = 1000 / perSecond - (Date.now() - started);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  agent.destroy();
}

process.send({ started: true });
const progress = setInterval(() => process.send({ answered }), 50);
await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
clearInterval(progress);
process.send({ statuses }, () => process.disconnect());
