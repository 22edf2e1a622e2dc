import type { FaultPoint } from "./flow-types.js";

const faultPoints: readonly FaultPoint[] = ["after-keygen", "after-csr", "after-issue", "after-install", "after-enc-key", "after-enc-cert", "after-recovered-key", "during-cleanup"];

/** The fault point named by UKEY_AGENT_FAULT, for the interruption tests; undefined when unset or unknown. */
export function faultFromEnv(env: Record<string, string | undefined> = process.env): FaultPoint | undefined {
  const v = env.UKEY_AGENT_FAULT;
  return faultPoints.find((p) => p === v);
}

/**
 * Simulates a crash at `point` when the context asks for it there: the
 * process kills itself with SIGKILL, so nothing after it runs (no finally,
 * no exit handler), as when the holder pulls the power or kills the agent.
 */
export function maybeCrash(configured: FaultPoint | undefined, point: FaultPoint): void {
  if (configured === point) process.kill(process.pid, "SIGKILL");
}
