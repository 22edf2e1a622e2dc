import { readFileSync } from "node:fs";
import { z } from "zod";
import { UkeyError, keyAlgorithms } from "@ukey/policy";

const port = z.number().int().min(0).max(65535);

/**
 * The server's configuration file (`<data-dir>/config.json`), written by
 * `ukey-server init` and edited by operators. Unknown keys are rejected;
 * every field has a safe default; secrets are never here, only paths to
 * files that hold them (see docs/configuration.md).
 */
export const serverConfigSchema = z.strictObject({
  version: z.literal(1).default(1),
  /** Base URL holders and relying parties reach; CRL, OCSP and CA-issuer URLs in certificates derive from it. */
  publicUrl: z.url({ protocol: /^https?$/ }).default("http://localhost:8080"),
  listen: z.strictObject({
    host: z.string().min(1).default("127.0.0.1"),
    port: port.default(8080),
    /** HTTPS port (EST and client certificates); null for none. */
    tlsPort: port.nullable().default(null),
  }).prefault({}),
  institution: z.strictObject({
    /** organizationName written into subjects. */
    name: z.string().min(1).max(64).default("ukey-renew demo"),
    /** countryName written into subjects (ISO 3166 alpha-2). */
    country: z.string().regex(/^[A-Z]{2}$/).default("CN"),
  }).prefault({}),
  ca: z.strictObject({
    algorithm: z.enum(keyAlgorithms as [string, ...string[]]).default("p256"),
    keyStore: z.discriminatedUnion("type", [
      z.strictObject({ type: z.literal("file") }),
      z.strictObject({
        type: z.literal("pkcs11"),
        module: z.string().min(1),
        /** Token label or serial number (never a slot number: slots move). */
        token: z.string().min(1),
        labelPrefix: z.string().min(1).default("ukey-"),
      }),
    ]).default({ type: "file" }),
    /** Hours between thisUpdate and nextUpdate of a CRL. */
    crlValidityHours: z.number().int().min(1).max(24 * 30).default(24 * 7),
    /** CRLs are re-signed at least this often, and at once after a revocation. */
    crlRefreshMinutes: z.number().int().min(1).max(24 * 60).default(60),
    /** Hours between thisUpdate and nextUpdate of an OCSP response. */
    ocspValidityHours: z.number().int().min(1).max(24 * 7).default(24),
  }).prefault({}),
  limits: z.strictObject({
    /** Largest request body accepted, in bytes. */
    bodyBytes: z.number().int().min(1024).max(10 * 1024 * 1024).default(64 * 1024),
  }).prefault({}),
  issuance: z.strictObject({
    /** Most certificates committed in one group commit. */
    batchSize: z.number().int().min(1).max(4096).default(256),
  }).prefault({}),
});

export type ServerConfig = Readonly<z.output<typeof serverConfigSchema>>;

/**
 * Parses and freezes a configuration object.
 * @throws UkeyError CONFIG_INVALID naming the first wrong field.
 */
export function parseServerConfig(input: unknown, source = "config.json"): ServerConfig {
  const r = serverConfigSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const where = issue.path.length ? issue.path.join(".") : "(top level)";
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `${source}: ${where}: ${issue.message}` } });
  }
  return deepFreeze(r.data);
}

/**
 * Reads `<path>` as JSON and parses it.
 * @throws UkeyError FILE_UNREADABLE, CONFIG_INVALID (with the line of a JSON syntax error).
 */
export function loadServerConfig(path: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    const m = /position (\d+)/.exec(String((cause as Error).message));
    const line = m ? text.slice(0, Number(m[1])).split("\n").length : undefined;
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `${path}${line ? ` line ${line}` : ""}: not valid JSON` }, cause });
  }
  return parseServerConfig(json, path);
}

/**
 * Reads a secret from the file an environment variable names (`*_FILE`),
 * dropping one trailing newline.
 * @throws UkeyError SECRET_FILE_REQUIRED when the variable is unset, FILE_UNREADABLE.
 */
export function readSecretFile(variable: string, path: string | undefined): string {
  if (!path) throw new UkeyError("SECRET_FILE_REQUIRED", { params: { variable } });
  try {
    return readFileSync(path, "utf8").replace(/\r?\n$/, "");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
