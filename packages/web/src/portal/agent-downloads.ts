// The agent's installers as the server publishes them (/downloads/manifest.json,
// written by `ukey-server downloads publish`), and whether the browser lets the
// page reach the agent on 127.0.0.1.
import type { Downloads, PublishedFile } from "./installer-choice.js";

const isFile = (f: unknown): f is PublishedFile => {
  const x = f as Partial<PublishedFile> | null;
  return !!x && typeof x.name === "string" && /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/.test(x.name) && typeof x.platform === "string"
    && typeof x.version === "string" && typeof x.size === "number" && x.size >= 0 && typeof x.sha256 === "string" && /^[0-9a-f]{64}$/.test(x.sha256);
};

/**
 * Reads /downloads/manifest.json of this site. The page takes the signed
 * payload as its own server sends it (the same server sends the page's
 * code, so checking the signature here would add nothing; the agent's
 * update check is what verifies it). 404: nothing published. Never throws:
 * a server that cannot answer is "unavailable".
 */
export async function loadDownloads(): Promise<Downloads> {
  try {
    const r = await fetch("/downloads/manifest.json", { cache: "no-store" });
    if (r.status === 404) return { kind: "none" };
    if (!r.ok) return { kind: "unavailable" };
    const env = await r.json() as { payload?: unknown };
    if (typeof env.payload !== "string") return { kind: "unavailable" };
    const bytes = Uint8Array.from(atob(env.payload), (c) => c.charCodeAt(0));
    const m = JSON.parse(new TextDecoder().decode(bytes)) as { kind?: unknown; version?: unknown; files?: unknown };
    if (m.kind !== "downloads-manifest" || typeof m.version !== "string" || !Array.isArray(m.files)) return { kind: "unavailable" };
    const files = m.files.filter(isFile);
    return files.length ? { kind: "published", version: m.version, files } : { kind: "none" };
  } catch {
    return { kind: "unavailable" };
  }
}

/**
 * Chrome (142 and later) asks the holder before a page may reach the agent
 * on 127.0.0.1 (Local Network Access); Chromium 156 names the permission
 * "loopback-network" (older builds: "local-network-access"). "n/a" where the
 * browser has no such permission or the page itself is on this computer
 * (no prompt then).
 */
export async function loopbackPermission(): Promise<"granted" | "prompt" | "denied" | "n/a"> {
  if (["127.0.0.1", "localhost", "[::1]"].includes(location.hostname)) return "n/a";
  const status = await loopbackPermissionStatus();
  return status ? status.state : "n/a";
}

/** The browser's PermissionStatus for reaching 127.0.0.1 (to follow its changes), or null where there is none. */
export async function loopbackPermissionStatus(): Promise<PermissionStatus | null> {
  for (const name of ["loopback-network", "local-network-access"]) {
    try {
      return await navigator.permissions.query({ name: name as PermissionName });
    } catch { /* not a permission of this browser */ }
  }
  return null;
}
