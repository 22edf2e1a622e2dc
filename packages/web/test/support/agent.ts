// The real agent (`ukey agent start`) for the portal's browser tests, on the
// SoftHSM2 token of an AgentWorld, with its JSON events read from stdout.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { ukeyBin, type AgentWorld } from "../../../agent/test/support/agent-world.js";

export interface RunningAgent {
  child: ChildProcess;
  /** http://127.0.0.1:PORT */
  url: string;
  /** Its UKEY_AGENT_HOME (pairings.json): a restart with the same home and port keeps the pairing. */
  home: string;
  /** Runs `ukey agent ARGS` (e.g. unpair ORIGIN) against this agent's home, as the holder would in a terminal. */
  command(args: string[]): { status: number | null; stdout: string; stderr: string };
  /** The next pairing code the agent shows (the holder reads it in the agent's window). */
  nextPairingCode(): Promise<{ origin: string; code: string }>;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * Starts `ukey agent start --port 0 --json --server <world's server>` with the
 * world's PKCS#11 module (or `opts.pkcs12`, a file token, or `opts.skf`, an SKF library and its software keys' directory, instead); the
 * server's own origin is allowed, and so is each of `origins`. `opts.home`
 * and `opts.port` restart an agent as it was (same pairing, same address). Resolves on its "listening" event.
 */
export async function startAgent(world: AgentWorld, origins: string[] = [], opts: { pkcs12?: string; home?: string; port?: number; skf?: { library: string; dir: string } } = {}): Promise<RunningAgent> {
  if (!world.server) throw new Error("start the world's server first");
  const home = opts.home ?? mkdtempSync(join(world.t.dir, "agent-home-"));
  const child = spawn(process.execPath, [ukeyBin, "agent", "start", "--port", String(opts.port ?? 0), "--json", "--server", world.server.url,
    ...(opts.pkcs12 ? ["--pkcs12", opts.pkcs12] : opts.skf ? [] : ["--module", world.hsm.module]),
    ...origins.flatMap((o) => ["--origin", o])], {
    env: {
      PATH: process.env.PATH ?? "", HOME: home, UKEY_AGENT_HOME: home, SOFTHSM2_CONF: world.hsm.conf, LANG: "en_US.UTF-8",
      ...(opts.skf ? { UKEY_SKF_LIBRARY: opts.skf.library, SKF_SOFTKEY_DIR: opts.skf.dir } : {}),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => { err += String(d); });
  const codes: { origin: string; code: string }[] = [];
  const waiters: ((c: { origin: string; code: string }) => void)[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    // Killed if it never says "listening": left running, it would hold the test file's process open.
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the agent did not start within 90 s: ${err}`));
    }, 90_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let ev: { event?: string; url?: string; origin?: string; code?: string };
      try { ev = JSON.parse(line) as typeof ev; } catch { return; }
      if (ev.event === "listening" && ev.url) { clearTimeout(timer); resolve(ev.url); }
      if (ev.event === "pairing-code" && ev.code) {
        const c = { origin: ev.origin ?? "", code: ev.code };
        const w = waiters.shift();
        if (w) w(c); else codes.push(c);
      }
    });
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`the agent exited ${code}: ${err}`)); });
  });
  return {
    child, url, home, stderr: () => err,
    command(args) {
      const r = spawnSync(process.execPath, [ukeyBin, "agent", ...args], {
        env: { PATH: process.env.PATH ?? "", HOME: home, UKEY_AGENT_HOME: home, LANG: "en_US.UTF-8" }, encoding: "utf8", timeout: 60_000,
      });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    },
    nextPairingCode: () => new Promise((resolve, reject) => {
      const c = codes.shift();
      if (c) return resolve(c);
      const timer = setTimeout(() => reject(new Error(`no pairing code shown: ${err}`)), 60_000);
      waiters.push((x) => { clearTimeout(timer); resolve(x); });
    }),
    stop: () => new Promise((r) => { if (child.exitCode !== null) return r(); child.once("exit", () => r()); child.kill("SIGTERM"); }),
  };
}
