// Which of the agent's published installers this computer needs (pure: no
// DOM, so the tests run it in Node); agent-downloads.ts reads them.

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
