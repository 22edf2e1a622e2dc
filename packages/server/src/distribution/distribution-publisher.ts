import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { UkeyError, makeSignedDocument, manifestFileSchema, type AgentConfigPayload, type DownloadsManifestPayload } from "@ukey/policy";
import type { ServerContext } from "../server-context.js";
import { distributionKey } from "./distribution-key.js";

/** The files publish writes itself; everything else in the folder is an installer listed in the manifest. */
export const distributionFiles = {
  key: "institution-key.pem",
  config: "agent-config.json",
  manifest: "manifest.json",
  sums: "SHA256SUMS",
} as const;

const reserved = new Set<string>(Object.values(distributionFiles));

/** The folder /downloads/ serves: config downloads.dir, relative to the data directory. */
export function distributionDir(ctx: Pick<ServerContext, "layout" | "config">): string {
  return resolve(ctx.layout.dir, ctx.config.downloads.dir);
}

/** The platform an installer is for, from its name: .deb and linux → linux-x64; .msi, .exe and win → win32-x64; else "any". */
export function platformOf(name: string): string {
  if (/\.msi$|\.exe$|win(32|64)?[-_.]/i.test(name)) return "win32-x64";
  if (/\.deb$|linux|amd64/i.test(name)) return "linux-x64";
  return "any";
}

export interface PublishResult {
  dir: string;
  keyId: string;
  config: AgentConfigPayload;
  manifest: DownloadsManifestPayload;
}

function writeWhole(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o644 });
  renameSync(tmp, path);
}

/**
 * `ukey-server downloads publish`: copies `from` (installers) into the
 * downloads folder, then writes, signed by the distribution key,
 * agent-config.json (institution name, the server's origin from publicUrl,
 * downloads.portalOrigins) and manifest.json (each installer's platform,
 * size, SHA-256 and `version`), the public key (institution-key.pem, which
 * installers carry) and SHA256SUMS (for sha256sum -c). Audited as
 * downloads.published.
 * @throws UkeyError FILE_UNREADABLE for a file that cannot be copied; CLI_USAGE for a file name the manifest cannot hold.
 */
export async function publishDownloads(
  ctx: Pick<ServerContext, "layout" | "config" | "store" | "clock">,
  opts: { from?: string[]; version: string; actor: string },
): Promise<PublishResult> {
  const dir = distributionDir(ctx);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const f of opts.from ?? []) {
    const name = basename(f);
    if (reserved.has(name) || !manifestFileSchema.shape.name.safeParse(name).success) {
      throw new UkeyError("CLI_USAGE", { params: { reason: `${name}: an installer's name is letters, digits, . _ + - and not one of ${[...reserved].join(", ")}` } });
    }
    try {
      copyFileSync(f, join(dir, `${name}.${process.pid}.tmp`));
      renameSync(join(dir, `${name}.${process.pid}.tmp`), join(dir, name));
    } catch (cause) {
      throw new UkeyError("FILE_UNREADABLE", { params: { path: f }, cause });
    }
  }
  const key = distributionKey(ctx.layout);
  const issuedAt = ctx.clock.now().toISOString();
  const server = new URL(ctx.config.publicUrl).origin;
  const files = readdirSync(dir)
    .filter((n) => !reserved.has(n) && !n.endsWith(".tmp") && manifestFileSchema.shape.name.safeParse(n).success && statSync(join(dir, n)).isFile())
    .sort()
    .map((name) => {
      const bytes = readFileSync(join(dir, name));
      return { name, platform: platformOf(name), version: opts.version, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
    });
  const config: AgentConfigPayload = { kind: "agent-config", institution: ctx.config.institution.name, server, origins: ctx.config.downloads.portalOrigins.map((o) => new URL(o).origin), issuedAt };
  const manifest: DownloadsManifestPayload = { kind: "downloads-manifest", institution: ctx.config.institution.name, server, version: opts.version, issuedAt, files };
  const spkiPem = `-----BEGIN PUBLIC KEY-----\n${key.spkiDer.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END PUBLIC KEY-----\n`;
  writeWhole(join(dir, distributionFiles.key), spkiPem);
  writeWhole(join(dir, distributionFiles.config), `${JSON.stringify(makeSignedDocument("agent-config", config, key.keyId, key.sign), null, 2)}\n`);
  writeWhole(join(dir, distributionFiles.manifest), `${JSON.stringify(makeSignedDocument("downloads-manifest", manifest, key.keyId, key.sign), null, 2)}\n`);
  writeWhole(join(dir, distributionFiles.sums), files.map((f) => `${f.sha256}  ${f.name}\n`).join(""));
  await ctx.store.transaction(async (r) => {
    await r.audit.append({
      at: ctx.clock.now().getTime(), actor: opts.actor, action: "downloads.published", subjectType: "distribution", subjectId: key.keyId,
      data: { version: opts.version, server, origins: config.origins, files: files.map((f) => ({ name: f.name, sha256: f.sha256 })) },
    });
  });
  return { dir, keyId: key.keyId, config, manifest };
}
