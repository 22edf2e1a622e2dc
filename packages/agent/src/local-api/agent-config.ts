import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { UkeyError } from "@ukey/policy";

/**
 * `<home>/agent.json`, the holder's (or the installer's) settings of the
 * agent. Unknown keys are rejected; every key is optional.
 * - server: the renewal server's URL (its origin may always talk to the agent)
 * - caFile: an extra root certificate (PEM) to trust for the server's HTTPS
 * - module: the key's PKCS#11 driver; pkcs12: a .pfx file instead of a key
 * - origins: further sites whose pages may talk to the agent (the portal, when it is not on the server's origin)
 * - port: the local API's port (default 24817)
 */
export const agentConfigSchema = z.strictObject({
  server: z.string().min(1).optional(),
  caFile: z.string().min(1).optional(),
  module: z.string().min(1).optional(),
  pkcs12: z.string().min(1).optional(),
  origins: z.array(z.string().min(1)).optional(),
  port: z.number().int().min(1).max(65535).optional(),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;

/**
 * Reads `<home>/agent.json`; {} when there is none.
 * @throws UkeyError FILE_UNREADABLE; CONFIG_INVALID naming the file and the first wrong key.
 */
export function readAgentConfig(home: string): AgentConfig {
  const path = join(home, "agent.json");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `${path} is not valid JSON` } });
  }
  const r = agentConfigSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `${path}: ${issue?.path.join(".") ?? ""} ${issue?.message ?? "unexpected content"}`.trim() } });
  }
  return Object.freeze(r.data);
}

/** The CA certificates (PEM) of `--ca-file` / agent.json `caFile`. Throws FILE_UNREADABLE, or PEM_MALFORMED when it holds no certificate. */
export function readCaFile(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new UkeyError("PEM_MALFORMED", { params: { reason: `${path} holds no certificate` } });
  return pem;
}

/** The agent's home directory: $UKEY_AGENT_HOME, else ~/.ukey. */
export function defaultAgentHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.UKEY_AGENT_HOME || join(homedir(), ".ukey");
}
