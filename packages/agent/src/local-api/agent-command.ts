import { parseArgs } from "node:util";
import { UkeyError, isUkeyError, type ErrorProblem } from "@ukey/policy";
import { buildInfo } from "../build-info.js";
import { faultFromEnv } from "../flows/fault.js";
import type { ServerConnection } from "../flows/flow-types.js";
import type { Flows } from "../flows/flow-types.js";
import { readAgentConfig, readCaFile } from "./agent-config.js";
import { loadInstitutionConfig, refreshInstitutionConfig } from "./institution-config.js";
import { defaultAgentHome, startLocalApi } from "./local-api-server.js";
import { PairingFile, normaliseOrigin } from "./pairings.js";
import { defaultAgentPort } from "./protocol.js";

/** Where `ukey agent` reads and writes. */
export interface AgentCommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  stdin?: NodeJS.ReadableStream;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Stops `ukey agent start` (besides SIGINT and SIGTERM); for running it inside another program or a test. */
  signal?: AbortSignal;
}

const usage = `ukey agent: the local service that lets your institution's web page use your UKey

  ukey agent start [--port P] [--origin URL ...] [--server URL] [--module PATH] [--pkcs12 FILE] [--json]
      serve the local API on http://127.0.0.1:P (default ${defaultAgentPort}) to the server's site and each --origin
      (also "origins" in ~/.ukey/agent.json); a new site is paired by typing the 6-digit code shown here.
      Installed from the institution's download page, it needs neither --server nor --origin: the institution's
      signed agent-config.json names both (docs/agent-install.md)
  ukey agent pairings [--json]        the sites paired with this agent
  ukey agent unpair ORIGIN [--json]   forget a site: its pages must pair again

The agent listens only on 127.0.0.1. The PIN is typed only in the agent's own
window (http://127.0.0.1:P/prompt/...), never in a website's page.`;

const packageVersion = buildInfo().version;

// The flows and the key backends (the PKI libraries, the PKCS#11 addon) load at
// the first operation, not at start: the agent answers /v1/hello sooner and rests smaller.
const loadFlows = async () => (await import("../flows/index.js")).flows;
// Every flow, whatever Flows holds, forwarded to the loaded module ("then" excepted: this object is not a promise).
const lazyFlows = new Proxy({} as Flows, {
  get: (_target, name) => (name === "then" || typeof name !== "string"
    ? undefined
    : async (...args: unknown[]) => ((await loadFlows()) as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!(...args)),
});

/**
 * Runs `ukey agent ARGS` and returns the exit code: 0 done, 1 failed, 2 wrong
 * usage or configuration. `start` runs until SIGINT, SIGTERM or io.signal.
 * Errors are printed with their catalogue code, message and remedy (stderr;
 * and as {"error": ...} on stdout with --json).
 */
export async function runAgentCommand(argv: string[], io: AgentCommandIo): Promise<number> {
  const json = argv.includes("--json");
  const env = io.env ?? process.env;
  const out = (human: string, data: unknown) => io.stdout.write(json ? `${JSON.stringify(data)}\n` : `${human}\n`);
  try {
    const { values: v, positionals } = (() => {
      try {
        return parseArgs({
          args: argv,
          allowPositionals: true,
          options: {
            port: { type: "string" }, origin: { type: "string", multiple: true }, server: { type: "string" }, "ca-file": { type: "string" },
            module: { type: "string" }, pkcs12: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" },
          },
        });
      } catch (e) {
        throw new UkeyError("CLI_USAGE", { params: { reason: (e as Error).message } });
      }
    })();
    const [command, ...rest] = positionals;
    if (v.help || command === undefined || command === "help") {
      io.stdout.write(`${usage}\n`);
      return command === undefined && !v.help ? 2 : 0;
    }
    const home = defaultAgentHome(env);
    switch (command) {
      case "start": {
        if (rest.length > 0) throw new UkeyError("CLI_USAGE", { params: { reason: `unexpected ${rest.join(" ")}` } });
        const config = readAgentConfig(home);
        const log = (line: string) => io.stderr.write(`ukey agent: ${line}\n`);
        const caFile = v["ca-file"] ?? config.caFile;
        let serverUrl = v.server ?? env.UKEY_SERVER ?? config.server;
        const institutionOrigins: string[] = [];
        if (!serverUrl) {
          // Installed from the institution's download page: its signed configuration names the server and the portal.
          let institution = loadInstitutionConfig(env, home, log);
          try {
            institution = await refreshInstitutionConfig(institution, home, caFile ? readCaFile(caFile) : undefined);
          } catch (e) {
            // The configuration in force stays: a server that is down, or a mirror that serves another file, changes nothing.
            const p = isUkeyError(e) ? e.toProblem() : undefined;
            log(`${p ? `${p.code} ${p.message.en}` : String(e)}; keeping the configuration of ${institution.config.issuedAt}`);
          }
          serverUrl = institution.config.server;
          institutionOrigins.push(...institution.config.origins);
        }
        normaliseOrigin(serverUrl, "--server");
        const server: ServerConnection = { url: serverUrl.replace(/\/+$/, ""), ...(caFile ? { caPem: readCaFile(caFile) } : {}) };
        let port = config.port ?? defaultAgentPort;
        if (v.port !== undefined) {
          if (!/^\d{1,5}$/.test(v.port) || Number(v.port) > 65535) throw new UkeyError("CLI_USAGE", { params: { reason: "--port must be a port number 0-65535" } });
          port = Number(v.port);
        }
        const module = v.module ?? config.module;
        const pkcs12 = v.pkcs12 ?? config.pkcs12;
        const fault = faultFromEnv(env);
        const api = await startLocalApi({
          port,
          home,
          allowedOrigins: [...(config.origins ?? []), ...institutionOrigins, ...(v.origin ?? [])],
          flows: lazyFlows,
          backendFactory: async () => (await import("../flows/key-vendor-source.js")).openInstitutionBackend(server, { ...(module ? { module } : {}), ...(pkcs12 ? { pkcs12 } : {}), home, env }),
          server,
          version: packageVersion,
          log,
          showPairingCode: (code, origin) => out(
            `\n  配对码 ${code}  —— 网站 ${origin} 请求使用您的 UKey。只有这是您自己刚打开的机构网页时，才把配对码输入到该网页中。\n`
            + `  Pairing code ${code} — the site ${origin} asks to use your UKey. Type the code into that page only if you just opened it yourself.\n`,
            { event: "pairing-code", origin, code },
          ),
          ...(fault ? { fault } : {}),
        });
        out(`ukey 代理正在运行：${api.url}（允许的网站：${api.origins.join("、")}）。按 Ctrl+C 停止。\n`
          + `ukey agent listening on ${api.url} for ${api.origins.join(", ")}. Press Ctrl+C to stop.`,
        { event: "listening", url: api.url, port: api.port, origins: api.origins, version: packageVersion });
        await new Promise<void>((resolve) => {
          const stop = () => {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            io.signal?.removeEventListener("abort", stop);
            resolve();
          };
          process.once("SIGINT", stop);
          process.once("SIGTERM", stop);
          if (io.signal?.aborted) stop();
          else io.signal?.addEventListener("abort", stop, { once: true });
        });
        await api.close();
        out("ukey 代理已停止。ukey agent stopped.", { event: "stopped" });
        return 0;
      }
      case "pairings": {
        if (rest.length > 0) throw new UkeyError("CLI_USAGE", { params: { reason: `unexpected ${rest.join(" ")}` } });
        const list = new PairingFile(home).list();
        const pairings = list.map((p) => ({ origin: p.origin, createdAt: p.createdAt, id: p.id }));
        const human = list.length === 0
          ? "没有已配对的网站。No site is paired."
          : ["已配对的网站 Paired sites:", ...list.map((p) => `  ${p.origin}  ${p.createdAt}`)].join("\n");
        out(human, { pairings });
        return 0;
      }
      case "unpair": {
        if (rest.length !== 1) throw new UkeyError("CLI_USAGE", { params: { reason: "give the site to forget: ukey agent unpair https://portal.example.com" } });
        const origin = normaliseOrigin(rest[0]!, "ORIGIN");
        const removed = new PairingFile(home).remove(origin);
        out(removed > 0
          ? `已取消网站 ${origin} 的配对（${removed} 个浏览器）。它的网页需要重新配对才能使用 UKey。\nUnpaired ${origin} (${removed} browser${removed === 1 ? "" : "s"}); its pages must pair again to use the UKey.`
          : `网站 ${origin} 没有配对，无需取消。${origin} was not paired; nothing to do.`,
        { origin, removed });
        return 0;
      }
      default:
        throw new UkeyError("CLI_USAGE", { params: { reason: `unknown command agent ${command}; see ukey agent --help` } });
    }
  } catch (e) {
    const u = isUkeyError(e) ? e : new UkeyError("INTERNAL", { cause: e });
    if (!isUkeyError(e)) io.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
    const p: ErrorProblem = u.toProblem();
    if (json) io.stdout.write(`${JSON.stringify({ error: p })}\n`);
    io.stderr.write(`错误 ${p.code}：${p.message["zh-CN"]}\n  处理：${p.remedy["zh-CN"]}\nError ${p.code}: ${p.message.en}\n  Remedy: ${p.remedy.en}\n${p.detail ? `  Detail: ${p.detail}\n` : ""}`);
    return u.code === "CLI_USAGE" || u.code === "CONFIG_INVALID" || u.code === "AGENT_NOT_CONFIGURED" ? 2 : 1;
  }
}

