import { createHash, createPublicKey, verify } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { UkeyError, isUkeyError, openSignedDocument, type AgentConfigPayload, type DownloadsManifestPayload, type Ed25519Verify } from "@ukey/policy";
import { ServerClient } from "../server-client.js";

/**
 * The institution's configuration of an installed agent (docs/agent-install.md).
 *
 * The installer puts two files beside the program (or the holder's agent
 * home holds them): institution-key.pem, the public key of the institution's
 * distribution key, and agent-config.json, signed by it, naming the server
 * and the portal origins. `ukey agent start` with no --server uses them, and
 * fetches a newer agent-config.json from the server's /downloads/ at each
 * start; a newer one that verifies is kept in the agent home. Anything that
 * does not verify against the installed key is refused with its catalogue
 * code and changes nothing.
 */
export const institutionFiles = { key: "institution-key.pem", config: "agent-config.json" } as const;

export interface InstitutionKey {
  spkiDer: Uint8Array;
  keyId: string;
  /** Where institution-key.pem was found. */
  dir: string;
}

const nodeVerify: Ed25519Verify = (data, signature, spkiDer) => {
  try {
    return verify(null, data, createPublicKey({ key: Buffer.from(spkiDer), format: "der", type: "spki" }), signature);
  } catch {
    return false;
  }
};

/** Where an installation's institution files may be: UKEY_INSTITUTION_DIR, the folder of a self-contained executable, the agent home. */
export function institutionDirs(env: NodeJS.ProcessEnv, home: string): string[] {
  const dirs: string[] = [];
  if (env.UKEY_INSTITUTION_DIR) dirs.push(env.UKEY_INSTITUTION_DIR);
  const sea = process.getBuiltinModule?.("node:sea") as { isSea(): boolean } | undefined;
  if (sea?.isSea()) dirs.push(dirname(process.execPath));
  dirs.push(home);
  return dirs;
}

/**
 * The institution's key of this installation, or undefined when none is installed.
 * @throws UkeyError CONFIG_INVALID when institution-key.pem is not an Ed25519 public key.
 */
export function findInstitutionKey(env: NodeJS.ProcessEnv, home: string): InstitutionKey | undefined {
  for (const dir of institutionDirs(env, home)) {
    const path = join(dir, institutionFiles.key);
    if (!existsSync(path)) continue;
    try {
      const key = createPublicKey(readFileSync(path, "utf8"));
      if (key.asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 key");
      const spkiDer = key.export({ format: "der", type: "spki" });
      return { spkiDer, keyId: createHash("sha256").update(spkiDer).digest("hex"), dir };
    } catch (cause) {
      throw new UkeyError("CONFIG_INVALID", { params: { reason: `${path} is not the institution's public key (Ed25519, PEM)` }, cause });
    }
  }
  return undefined;
}

function readSigned(path: string, key: InstitutionKey): AgentConfigPayload {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new UkeyError("DOWNLOAD_SIGNATURE_INVALID", { params: { file: path }, detail: "not JSON" });
  }
  return openSignedDocument(json, "agent-config", key, nodeVerify);
}

/** The configuration in force and where it came from. */
export interface InstitutionConfig {
  key: InstitutionKey;
  config: AgentConfigPayload;
}

/**
 * The installed configuration (beside the key), replaced by the agent
 * home's copy when that one verifies, names the same server and is newer.
 * @throws UkeyError AGENT_NOT_CONFIGURED when no institution key is installed
 *   or no agent-config.json lies beside it; DOWNLOAD_SIGNATURE_INVALID or
 *   INSTITUTION_MISMATCH when the installed one does not verify.
 */
export function loadInstitutionConfig(env: NodeJS.ProcessEnv, home: string, log: (line: string) => void = () => undefined): InstitutionConfig {
  const key = findInstitutionKey(env, home);
  const installed = key ? join(key.dir, institutionFiles.config) : undefined;
  if (!key || !installed || !existsSync(installed)) throw new UkeyError("AGENT_NOT_CONFIGURED");
  let config = readSigned(installed, key);
  const kept = join(home, institutionFiles.config);
  if (kept !== installed && existsSync(kept)) {
    try {
      const newer = readSigned(kept, key);
      if (newer.server !== config.server) throw new UkeyError("INSTITUTION_MISMATCH", { params: { file: kept }, detail: `names ${newer.server}, installed for ${config.server}` });
      if (newer.issuedAt > config.issuedAt) config = newer;
    } catch (e) {
      if (!isUkeyError(e)) throw e;
      log(`${e.code}: ${kept} ignored (${e.detail ?? ""})`);
    }
  }
  return { key, config };
}

/**
 * Fetches the server's current agent-config.json and keeps it in the agent
 * home when it verifies against the installed key, names the same server and
 * is newer; returns the configuration then in force.
 * @throws UkeyError DOWNLOAD_SIGNATURE_INVALID, INSTITUTION_MISMATCH (nothing kept), or the server's
 *   errors (SERVER_UNREACHABLE ...): the caller goes on with `current`.
 */
export async function refreshInstitutionConfig(current: InstitutionConfig, home: string, caPem?: string): Promise<InstitutionConfig> {
  const client = new ServerClient({ url: current.config.server, ...(caPem ? { caPem } : {}) }, 10_000);
  const raw = await client.distributionDocument("agent-config.json");
  const fetched = openSignedDocument(raw, "agent-config", current.key, nodeVerify);
  if (fetched.server !== current.config.server) {
    throw new UkeyError("INSTITUTION_MISMATCH", { params: { file: institutionFiles.config }, detail: `names ${fetched.server}, installed for ${current.config.server}` });
  }
  if (fetched.issuedAt <= current.config.issuedAt) return current;
  // The signed envelope is kept as fetched, so it can be verified again at every start.
  const path = join(home, institutionFiles.config);
  const tmp = `${path}.${process.pid}.tmp`;
  mkdirSync(home, { recursive: true, mode: 0o700 });
  writeFileSync(tmp, JSON.stringify(raw), { mode: 0o600 });
  renameSync(tmp, path);
  return { key: current.key, config: readSigned(path, current.key) };
}

/** What `ukey update` found. */
export interface UpdateCheck {
  institution: string;
  running: string;
  published: string;
  /** The published installers for this platform (or "any"). */
  files: DownloadsManifestPayload["files"];
  /** Every published file, all platforms. */
  allFiles: DownloadsManifestPayload["files"];
  updateAvailable: boolean;
}

/** Compares dotted versions numerically ("0.10.0" > "0.9.1"); non-numeric parts compare as text. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "0";
    const y = pb[i] ?? "0";
    const d = /^\d+$/.test(x) && /^\d+$/.test(y) ? Number(x) - Number(y) : x.localeCompare(y);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/**
 * The agent's update check: the server's manifest.json, verified against the
 * installed key, compared with the running version.
 * @throws UkeyError AGENT_NOT_CONFIGURED, DOWNLOAD_SIGNATURE_INVALID, INSTITUTION_MISMATCH, or the server's errors.
 */
export async function checkForUpdate(current: InstitutionConfig, running: string, platform: string, caPem?: string): Promise<UpdateCheck> {
  const client = new ServerClient({ url: current.config.server, ...(caPem ? { caPem } : {}) }, 10_000);
  const manifest = openSignedDocument(await client.distributionDocument("manifest.json"), "downloads-manifest", current.key, nodeVerify);
  if (manifest.server !== current.config.server) {
    throw new UkeyError("INSTITUTION_MISMATCH", { params: { file: "manifest.json" }, detail: `names ${manifest.server}, installed for ${current.config.server}` });
  }
  const files = manifest.files.filter((f) => f.platform === platform || f.platform === "any");
  return { institution: manifest.institution, running, published: manifest.version, files, allFiles: manifest.files, updateAvailable: compareVersions(manifest.version, running) > 0 };
}

/**
 * Checks a downloaded file against the signed manifest: an entry of that name, the same size and SHA-256.
 * @throws UkeyError DOWNLOAD_CHECKSUM_MISMATCH (naming the file) when any differs; FILE_UNREADABLE.
 */
export function verifyDownloadedFile(path: string, files: DownloadsManifestPayload["files"]): DownloadsManifestPayload["files"][number] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  const name = basename(path);
  const entry = files.find((f) => f.name === name);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (!entry || entry.size !== bytes.length || entry.sha256 !== sha256) {
    throw new UkeyError("DOWNLOAD_CHECKSUM_MISMATCH", { params: { file: name }, detail: entry ? `size ${bytes.length} (listed ${entry.size}), sha256 ${sha256}` : "not in the manifest" });
  }
  return entry;
}
