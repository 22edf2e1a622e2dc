// The agent's installers as the server publishes them (/downloads/manifest.json,
// written by `ukey-server downloads publish`), and which one this computer needs.

/** One published file, as the manifest lists it. */
export interface PublishedFile {
  name: string;
  platform: string;
  version: string;
  size: number;
  sha256: string;
}

/** What the server publishes: nothing yet, or the agent version and its files. */
export type Downloads =
  | { kind: "none" }
  | { kind: "published"; version: string; files: PublishedFile[] }
  | { kind: "unavailable" };

/** The holder's system, from the browser's user agent. */
export type HolderOs = "windows" | "macos" | "linux" | "mobile";

/** Windows, macOS, Linux, or a phone or tablet (which cannot hold a UKey agent). */
export function detectOs(ua: string): HolderOs {
  if (/Android|iPhone|iPad|iPod/i.test(ua)) return "mobile";
  if (/Windows/i.test(ua)) return "windows";
  if (/Mac OS X|Macintosh/i.test(ua)) return "macos";
  return "linux";
}

const platformOfOs: Record<HolderOs, string | null> = { windows: "win32", macos: "darwin", linux: "linux", mobile: null };

/** Installers before bare executables: an .msi or .deb also starts the agent at login. */
function rank(name: string): number {
  const n = name.toLowerCase();
  if (n.endsWith(".msi") || n.endsWith(".deb") || n.endsWith(".pkg")) return 0;
  if (n.endsWith(".exe") || n.endsWith(".dmg")) return 1;
  return 2;
}

/** The file to offer first on `os` (its platform's installer), or null when none is published for it. */
export function primaryInstaller(files: PublishedFile[], os: HolderOs): PublishedFile | null {
  const prefix = platformOfOs[os];
  if (!prefix) return null;
  return files.filter((f) => f.platform === prefix || f.platform.startsWith(`${prefix}-`))
    .sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name))[0] ?? null;
}

/** A size as the page shows it: MB with one decimal, KB below 0.1 MB. */
export function sizeText(bytes: number): string {
  if (bytes < 104_858) return `${Math.max(1, Math.round(bytes / 1024))} KB`;
  return `${(bytes / 1_048_576).toFixed(1)} MB`;
}

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
