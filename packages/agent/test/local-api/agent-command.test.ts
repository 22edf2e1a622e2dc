import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runAgentCommand } from "../../src/local-api/agent-command.js";
import { PairingFile } from "../../src/local-api/pairings.js";
import { createSoftHsmToken } from "../../../ca/test/support/softhsm.js";
import { nextEvent, spawnAgent } from "./support.js";

const portal = "https://portal.example.com";
const consoleSite = "https://console.example.org";

let home: string;
before(() => {
  home = mkdtempSync(join(tmpdir(), "ukey-agent-cmd-"));
  writeFileSync(join(home, "agent.json"), JSON.stringify({ origins: [consoleSite], server: "http://127.0.0.1:9/api" }));
});
after(() => rmSync(home, { recursive: true, force: true }));

/** Runs `ukey agent ARGS` in this process and collects what it prints. */
async function agent(args: string[], env: NodeJS.ProcessEnv = { UKEY_AGENT_HOME: home }, signal?: AbortSignal) {
  let stdout = "";
  let stderr = "";
  const status = await runAgentCommand(args, {
    stdout: { write: (t: string) => { stdout += t; } },
    stderr: { write: (t: string) => { stderr += t; } },
    env, ...(signal ? { signal } : {}),
  });
  return { status, stdout, stderr };
}

test("ukey agent start --json: listens, prints each pairing code as an event, and stops on SIGTERM", async () => {
  const { child, events, stderr } = spawnAgent(home, ["start", "--port", "0", "--origin", portal, "--json"]);
  try {
    const listening = await nextEvent(events, stderr);
    assert.equal(listening.event, "listening");
    const url = listening.url as string;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual([...(listening.origins as string[])].sort(), [consoleSite, "http://127.0.0.1:9", portal].sort());

    const hello = await fetch(`${url}/v1/hello`, { headers: { origin: consoleSite } });
    assert.equal(hello.status, 200);
    assert.equal((await fetch(`${url}/v1/hello`, { headers: { origin: "https://elsewhere.example" } })).status, 403);

    const started = await (await fetch(`${url}/v1/pairings`, { method: "POST", headers: { origin: portal } })).json() as { id: string };
    const shown = await nextEvent(events, stderr);
    assert.equal(shown.event, "pairing-code");
    assert.equal(shown.origin, portal);
    assert.match(shown.code as string, /^\d{6}$/);
    const confirmed = await fetch(`${url}/v1/pairings/${started.id}/confirm`, {
      method: "POST", headers: { origin: portal, "content-type": "application/json" }, body: JSON.stringify({ code: shown.code }),
    });
    assert.equal(confirmed.status, 200);
    const { token } = await confirmed.json() as { token: string };
    const paired = async () => ((await (await fetch(`${url}/v1/hello`, { headers: { origin: portal, authorization: `Bearer ${token}` } })).json()) as { paired: boolean }).paired;
    assert.equal(await paired(), true);

    const list = await agent(["pairings", "--json"]);
    assert.equal(list.status, 0);
    assert.deepEqual((JSON.parse(list.stdout) as { pairings: { origin: string }[] }).pairings.map((p) => p.origin), [portal]);
    const human = await agent(["pairings"]);
    assert.match(human.stdout, /https:\/\/portal\.example\.com/);

    // Unpairing names the site by any URL of it, and the running agent forgets it at once.
    const un = await agent(["unpair", `${portal}/renew?x=1`, "--json"]);
    assert.equal(un.status, 0, un.stderr);
    assert.deepEqual(JSON.parse(un.stdout), { origin: portal, removed: 1 });
    assert.equal(await paired(), false);
    assert.deepEqual(new PairingFile(home).list(), []);
    const again = await agent(["unpair", portal]);
    assert.equal(again.status, 0);
    assert.match(again.stdout, /was not paired/);

    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    assert.equal((await nextEvent(events, stderr)).event, "stopped");
    assert.equal(await exited, 0);
    assert.match(stderr(), /listening on http:\/\/127\.0\.0\.1/);
    assert.doesNotMatch(stderr(), new RegExp(String(shown.code)), "the pairing code is shown once, as the event");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

test("ukey agent start in words: the address, the sites and each pairing code for the holder", async () => {
  const stop = new AbortController();
  let stdout = "";
  let stderr = "";
  let listening: (url: string) => void = () => {};
  const url = new Promise<string>((r) => { listening = r; });
  const running = runAgentCommand(["start", "--port", "0", "--server", "http://127.0.0.1:9"], {
    stdout: { write: (t: string) => { stdout += t; const m = /http:\/\/127\.0\.0\.1:\d+/.exec(stdout); if (m) listening(m[0]); } },
    stderr: { write: (t: string) => { stderr += t; } },
    env: { UKEY_AGENT_HOME: home },
    signal: stop.signal,
  });
  const base = await Promise.race([url, running.then((code) => { throw new Error(`agent ended with ${code}: ${stderr}`); })]);
  assert.equal((await fetch(`${base}/v1/pairings`, { method: "POST", headers: { origin: consoleSite } })).status, 201);
  stop.abort();
  assert.equal(await running, 0, stderr);
  assert.match(stdout, /ukey 代理正在运行：http:\/\/127\.0\.0\.1:\d+（允许的网站：https:\/\/console\.example\.org、http:\/\/127\.0\.0\.1:9）/);
  assert.match(stdout, /ukey agent listening on http:\/\/127\.0\.0\.1:\d+ for https:\/\/console\.example\.org, http:\/\/127\.0\.0\.1:9/);
  assert.match(stdout, /配对码 \d{6} +—— 网站 https:\/\/console\.example\.org 请求使用您的 UKey/);
  assert.match(stdout, /Pairing code \d{6} — the site https:\/\/console\.example\.org asks to use your UKey/);
  assert.match(stdout, /ukey agent stopped/);
});

test("ukey agent start --module: the page lists the keys of that PKCS#11 module (SoftHSM2)", async () => {
  const hsm = createSoftHsmToken("agent-cmd-key", "123456", "87654321");
  const { child, events, stderr } = spawnAgent(home, ["start", "--port", "0", "--module", hsm.module, "--json"], { SOFTHSM2_CONF: hsm.conf });
  try {
    const { url } = await nextEvent(events, stderr) as { url: string };
    const started = await (await fetch(`${url}/v1/pairings`, { method: "POST", headers: { origin: consoleSite } })).json() as { id: string };
    const { code } = await nextEvent(events, stderr) as { code: string };
    const { token } = await (await fetch(`${url}/v1/pairings/${started.id}/confirm`, {
      method: "POST", headers: { origin: consoleSite, "content-type": "application/json" }, body: JSON.stringify({ code }),
    })).json() as { token: string };
    const r = await fetch(`${url}/v1/tokens`, { headers: { origin: consoleSite, authorization: `Bearer ${token}` } });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    const tokens = JSON.parse(text) as { token: { serial: string; label: string; backend: string }; certificates: unknown[] }[];
    assert.deepEqual(tokens.map((t) => [t.token.serial, t.token.label, t.token.backend, t.certificates.length]), [[hsm.tokenSerial, "agent-cmd-key", "pkcs11", 0]]);
  } finally {
    child.kill("SIGKILL");
    hsm.cleanup();
  }
});

test("a second ukey agent start on a taken port says which agent runs there, exits 1 and leaves the first one serving", async () => {
  const { child, events, stderr } = spawnAgent(home, ["start", "--port", "0", "--origin", portal, "--json"]);
  const squatter = createNetServer();
  try {
    const listening = await nextEvent(events, stderr);
    const port = listening.port as number;
    const url = listening.url as string;
    const pairingsBefore = readdirSync(home).sort().map((f) => [f, readFileSync(join(home, f), "utf8")]);

    const second = await agent(["start", "--port", String(port), "--origin", portal, "--json"]);
    assert.equal(second.status, 1, second.stderr);
    const p = (JSON.parse(second.stdout) as { error: { code: string; message: { "zh-CN": string; en: string }; remedy: { "zh-CN": string; en: string } } }).error;
    assert.equal(p.code, "AGENT_ALREADY_RUNNING");
    assert.equal(p.message["zh-CN"], `本机已有一个 ukey 代理（版本 ${listening.version as string}）在端口 ${port} 上运行，无需再启动一个。`);
    assert.match(p.message.en, new RegExp(`version ${String(listening.version).replace(/\./g, "\\.")}\\) is already running on port ${port}`));
    assert.match(p.remedy["zh-CN"], /回到本机构的网页/);
    assert.match(second.stderr, /错误 AGENT_ALREADY_RUNNING/);
    // The first agent still answers, its pairings and files are as they were, and it is not stopped.
    const hello = await fetch(`${url}/v1/hello`, { headers: { origin: portal } });
    assert.equal(hello.status, 200);
    assert.equal((await hello.json() as { agent: string }).agent, "ukey-agent");
    assert.deepEqual(readdirSync(home).sort().map((f) => [f, readFileSync(join(home, f), "utf8")]), pairingsBefore);
    assert.equal(child.exitCode, null);

    // Another program on the port (not a ukey agent): said so, with the port, and nothing else done.
    await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", r));
    const taken = (squatter.address() as { port: number }).port;
    squatter.on("connection", (s) => s.end("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"));
    const other = await agent(["start", "--port", String(taken), "--json"]);
    assert.equal(other.status, 1, other.stderr);
    const q = (JSON.parse(other.stdout) as { error: { code: string; message: { "zh-CN": string } } }).error;
    assert.equal(q.code, "AGENT_PORT_IN_USE");
    assert.equal(q.message["zh-CN"], `本机的端口 ${taken} 已被另一个程序占用，ukey 代理无法启动。`);
  } finally {
    squatter.close();
    child.kill("SIGKILL");
  }
});

test("ukey agent refuses wrong usage and configuration with catalogue codes and exit 2", async () => {
  const noServer = mkdtempSync(join(tmpdir(), "ukey-agent-cmd-"));
  const badConfig = mkdtempSync(join(tmpdir(), "ukey-agent-cmd-"));
  writeFileSync(join(badConfig, "agent.json"), JSON.stringify({ server: "http://127.0.0.1:9", origin: [portal] }));
  try {
    const cases: [string[], string, string][] = [
      // neither --server nor an installed institution configuration
      [["start", "--port", "0", "--json"], noServer, "AGENT_NOT_CONFIGURED"],
      [["start", "--port", "0", "--json"], badConfig, "CONFIG_INVALID"],
      [["start", "--port", "http", "--json"], home, "CLI_USAGE"],
      [["start", "--port", "0", "--origin", "ftp://files.example", "--json"], home, "CONFIG_INVALID"],
      [["unpair", "--json"], home, "CLI_USAGE"],
      [["unpair", "not a url", "--json"], home, "CONFIG_INVALID"],
      [["frobnicate", "--json"], home, "CLI_USAGE"],
      [["start", "--bogus", "--json"], home, "CLI_USAGE"],
    ];
    for (const [args, h, code] of cases) {
      const r = await agent(args, { UKEY_AGENT_HOME: h });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      const p = (JSON.parse(r.stdout) as { error: { code: string; message: { en: string }; remedy: { "zh-CN": string } } }).error;
      assert.equal(p.code, code, args.join(" "));
      assert.match(r.stderr, new RegExp(`错误 ${code}`));
      assert.match(r.stderr, new RegExp(`Error ${code}`));
    }
    const help = await agent(["--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /ukey agent start/);
  } finally {
    rmSync(noServer, { recursive: true, force: true });
    rmSync(badConfig, { recursive: true, force: true });
  }
});
