import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { UkeyError } from "@ukey/policy";
import type { Flows } from "../../src/flows/flow-types.js";
import type { KeyStoreBackend } from "../../src/keys/key-store.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import { startLocalApi, type LocalApi, type LocalApiOptions } from "../../src/local-api/local-api-server.js";
import { testBundles } from "../../../server/test/support/test-bundle.js";

export const portal = "https://portal.example.com";
export const otherSite = "https://other.example.net";

/**
 * The HTTP-layer tests need no key: their stand-in flows never touch the
 * backend, and this one fails loudly if anything does.
 */
export const untouchedBackend: KeyStoreBackend = new Proxy({} as KeyStoreBackend, {
  get(_t, prop) {
    if (prop === "then") return undefined;
    if (prop === "close") return async () => {};
    // What kind of key it is only words the PIN page ("UKey" or "file"); it uses nothing.
    if (prop === "kind") return "pkcs11";
    throw new Error(`the stand-in flows must not use the key backend (${String(prop)})`);
  },
});

export interface TestAgent {
  api: LocalApi;
  home: string;
  logs: string[];
  /** Pairing codes the agent showed, newest last. */
  codes: { code: string; origin: string }[];
  /** A settable clock. */
  clock: { now: Date };
  call(path: string, init?: { origin?: string | null; token?: string; method?: string; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; json: Record<string, unknown>; text: string }>;
  /** Pairs `origin` and returns its bearer token. */
  pair(origin?: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * Long-polls an operation of `agent` until `pred` holds (each poll waits for
 * a change, never a fixed time), at most `polls` times; fails with the last view.
 */
export async function waitForOperation(agent: TestAgent, token: string, id: string, pred: (v: OperationView) => boolean,
  opts: { origin?: string; polls?: number } = {}): Promise<OperationView> {
  const origin = opts.origin ?? portal;
  let v = (await agent.call(`/v1/operations/${id}`, { token, origin })).json as unknown as OperationView;
  for (let i = 0; i < (opts.polls ?? 60) && !pred(v); i++) {
    const r = await agent.call(`/v1/operations/${id}?after=${v.progress.length}&revision=${v.revision}&wait=25`, { token, origin });
    assert.equal(r.status, 200, r.text);
    v = r.json as unknown as OperationView;
  }
  assert.ok(pred(v), `operation never reached the expected state: ${JSON.stringify(v)}`);
  return v;
}

/** A certificate serial in hex as one comparable form: lower case, no separators, no leading zeros. */
export const normSerial = (hex: string) => hex.toLowerCase().replace(/[^0-9a-f]/g, "").replace(/^0+/, "");

/** Starts a local API on a free port with a private home, two allowed origins and the given flows. */
export async function startTestAgent(flows: Flows, extra: Partial<LocalApiOptions> = {}): Promise<TestAgent> {
  const home = mkdtempSync(join(tmpdir(), "ukey-agent-home-"));
  const logs: string[] = [];
  const codes: { code: string; origin: string }[] = [];
  const clock = { now: new Date("2026-11-21T10:00:00Z") };
  const api = await startLocalApi({
    port: 0,
    home,
    allowedOrigins: [portal, `${otherSite}/some/path`],
    flows,
    backendFactory: async () => untouchedBackend,
    server: { url: "https://ra.example.org/api" },
    showPairingCode: (code, origin) => codes.push({ code, origin }),
    version: "0.1.0",
    now: () => clock.now,
    log: (line) => logs.push(line),
    ...extra,
  });
  const call: TestAgent["call"] = async (path, init = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    if (init.origin !== null) headers.origin = init.origin ?? portal;
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    if (init.body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
    const res = await fetch(`${api.url}${path}`, {
      method: init.method ?? (init.body !== undefined ? "POST" : "GET"),
      headers,
      ...(init.body !== undefined ? { body: typeof init.body === "string" ? init.body : JSON.stringify(init.body) } : {}),
      redirect: "manual",
    });
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* HTML or empty */ }
    return { status: res.status, headers: res.headers, json, text };
  };
  const pair = async (origin = portal) => {
    const started = await call("/v1/pairings", { origin, method: "POST" });
    if (started.status !== 201) throw new Error(`pairing did not start: ${started.text}`);
    const code = codes.at(-1)!.code;
    const confirmed = await call(`/v1/pairings/${started.json.id as string}/confirm`, { origin, body: { code } });
    if (confirmed.status !== 200) throw new Error(`pairing not confirmed: ${confirmed.text}`);
    return confirmed.json.token as string;
  };
  return {
    api, home, logs, codes, clock, call, pair,
    close: async () => { await api.close(); rmSync(home, { recursive: true, force: true }); },
  };
}

/** A raw HTTP request with any Host header (fetch would not send a foreign one). */
export function rawRequest(url: string, opts: { method?: string; headers: Record<string, string>; body?: string }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? "GET", headers: opts.headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** Posts the PIN page's form as a browser does from the page itself (Origin: null under no-referrer). */
export function postPin(promptUrl: string, fields: Record<string, string>, headers: Record<string, string> = { origin: "null", "sec-fetch-site": "same-origin" }) {
  return rawRequest(promptUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(fields).toString(),
  });
}

/** A stand-in for the flows, for the HTTP-layer tests: each operation runs `script` with the real Prompter the local API gives it. */
export function scriptedFlows(script: (ctx: Parameters<Flows["renew"]>[0], kind: string) => Promise<unknown>): Flows {
  const notHere = () => { throw new UkeyError("INTERNAL", { detail: "not used by this test" }); };
  return {
    status: async () => [],
    renew: (ctx) => script(ctx, "renew") as never,
    download: (ctx) => script(ctx, "download") as never,
    initialise: (ctx) => script(ctx, "initialise") as never,
    changePin: (ctx) => script(ctx, "change-pin") as never,
    cleanUp: (ctx) => script(ctx, "clean-up") as never,
    doctor: notHere,
    readCertificates: (ctx) => script(ctx, "read-certificates") as never,
  };
}

/** `ukey` as tests start it: the bundle of the current sources (scripts/test-bundle.mjs). */
const ukeyBin = testBundles().agent;

/** `ukey agent ARGS` (the real bin) as its own process with UKEY_AGENT_HOME=home, its stdout read as JSON events (give --json). */
export function spawnAgent(home: string, args: string[], env: Record<string, string> = {}): { child: ChildProcess; events: AsyncIterator<Record<string, unknown>>; stderr: () => string } {
  const child = spawn(process.execPath, [ukeyBin, "agent", ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: home, UKEY_AGENT_HOME: home, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => { err += String(d); });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const events: AsyncIterator<Record<string, unknown>> = {
    async next() {
      const r = await lines.next();
      if (r.done) return { done: true, value: undefined };
      return { done: false, value: JSON.parse(r.value) as Record<string, unknown> };
    },
  };
  return { child, events, stderr: () => err };
}

/** The next JSON event of a spawned agent; fails with its stderr when it ended instead. */
export async function nextEvent(events: AsyncIterator<Record<string, unknown>>, stderr: () => string): Promise<Record<string, unknown>> {
  const r = await events.next();
  assert.ok(!r.done, `the agent ended early: ${stderr()}`);
  return r.value;
}
