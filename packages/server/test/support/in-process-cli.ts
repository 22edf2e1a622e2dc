import { systemClock } from "@ukey/policy";
import { runCli } from "../../src/cli.js";
import type { ServerContext } from "../../src/server-context.js";
import type { CliResult } from "./fixtures.js";

/**
 * `ukey-server` run in this process: the bin's own command code (runCli) with the given arguments and environment,
 * no process start of its own. A command the running server takes (holder, issue, hold, enrol, reload, ...) still
 * reaches it through its control socket, as from the bin; with `context`, the commands run on that opened data
 * directory, as the server runs what its control socket forwards. For tests whose subject is not the bin's start-up
 * or its process boundary (the bin itself is tested in cli, cli-operations and cli-running-server).
 */
export async function runUkeyServerHere(args: string[], env: Record<string, string> = {}, context?: ServerContext): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const status = await runCli(args, {
    out: (x) => { stdout += x; }, err: (x) => { stderr += x; }, env, clock: systemClock, ...(context ? { context } : {}),
  });
  return { status, stdout, stderr, json: <T>() => JSON.parse(stdout.trim().split("\n").pop() ?? "") as T };
}
