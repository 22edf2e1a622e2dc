import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SkfBackend } from "../../../src/keys/skf-backend.js";

// skf-softkey, the software SKF (GM/T 0016) key of docs/skf-softkey.md: a test
// stand-in for a vendor's SKF library, built by scripts/ensure-skf-softkey.sh.

const script = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../../scripts/ensure-skf-softkey.sh");

/** Paths of the built library and its two programs. */
export interface SoftkeyBuild {
  /** libskf-softkey.so: what the agent loads in place of a vendor's SKF library. */
  library: string;
  /** libskf-softkey-noimport.so: the same without SKF_ImportECCKeyPair, a vendor library that lacks a function. */
  libraryWithoutImport: string;
  /** skf-softkey-admin: makes, shows, unplugs and removes keys, and works their button. */
  admin: string;
  /** skf-softkey-conformance: the library's own GM/T 0016 checks. */
  conformance: string;
}

let built: SoftkeyBuild | undefined;

/** Builds skf-softkey once (cached by its sources' hash); throws, never skips, when it cannot be built. */
export function ensureSoftkey(): SoftkeyBuild {
  if (built) return built;
  const r = spawnSync("bash", [script], { encoding: "utf8" });
  if (r.error || r.status !== 0) {
    throw new Error(`the software SKF key (skf-softkey) is required and could not be built: ${r.error?.message ?? ""}${r.stderr}${r.stdout}`);
  }
  const library = r.stdout.trim();
  const dir = dirname(library);
  built = { library, libraryWithoutImport: join(dir, "libskf-softkey-noimport.so"), admin: join(dir, "skf-softkey-admin"), conformance: join(dir, "skf-softkey-conformance") };
  return built;
}

/** Options of `skf-softkey-admin create` (see its help): label, serial, PINs, retries, storage, button timeout... */
export interface SoftkeyDeviceOptions {
  label?: string;
  serial?: string;
  manufacturer?: string;
  issuer?: string;
  hwVersion?: string;
  fwVersion?: string;
  /** Application name; null makes a key with no application (to be initialised). Default DEFAULT_APP. */
  app?: string | null;
  userPin?: string;
  adminPin?: string;
  userRetries?: number;
  adminRetries?: number;
  /** Total storage in octets (default 32768). */
  storage?: number;
  maxContainers?: number;
  buttonTimeoutMs?: number;
  /** 32 hex digits (default the ASCII of 1234567812345678). */
  devAuthKey?: string;
  /** Where SKF_ImportECCKeyPair reads the encrypted private key: right (the standard's, default) or left (some vendors'). */
  envelopeLayout?: "right" | "left";
}

/** A directory of software keys ($SKF_SOFTKEY_DIR) and the admin tool bound to it. */
export class SoftkeyDir {
  readonly dir: string;
  readonly build: SoftkeyBuild;
  readonly env: NodeJS.ProcessEnv;

  constructor(build = ensureSoftkey()) {
    this.build = build;
    this.dir = mkdtempSync(join(tmpdir(), "ukey-skf-"));
    this.env = { ...process.env, SKF_SOFTKEY_DIR: this.dir };
  }

  /** Runs skf-softkey-admin; throws with its output on failure. */
  admin(args: string[]): string {
    const r = spawnSync(this.build.admin, args, { encoding: "utf8", env: this.env });
    if (r.error || r.status !== 0) throw new Error(`skf-softkey-admin ${args.join(" ")} failed (${r.status}): ${r.error?.message ?? ""}${r.stderr}`);
    return r.stdout;
  }

  /** Plugs in a new key. */
  create(name: string, o: SoftkeyDeviceOptions = {}): void {
    const args = ["create", name];
    const opt = (flag: string, v: string | number | undefined) => { if (v !== undefined) args.push(flag, String(v)); };
    opt("--label", o.label); opt("--serial", o.serial); opt("--manufacturer", o.manufacturer); opt("--issuer", o.issuer);
    opt("--hw-version", o.hwVersion); opt("--fw-version", o.fwVersion);
    if (o.app === null) args.push("--no-app"); else opt("--app", o.app);
    opt("--user-pin", o.userPin); opt("--admin-pin", o.adminPin); opt("--user-retries", o.userRetries); opt("--admin-retries", o.adminRetries);
    opt("--storage", o.storage); opt("--max-containers", o.maxContainers); opt("--button-timeout-ms", o.buttonTimeoutMs);
    opt("--dev-auth-key", o.devAuthKey); opt("--envelope-layout", o.envelopeLayout);
    this.admin(args);
  }

  /** The key's contents as skf-softkey-admin show prints them. */
  show(name: string): SoftkeyContents {
    return JSON.parse(this.admin(["show", name])) as SoftkeyContents;
  }

  /** Sets the key's button: auto, refuse, timeout or wait (then press() answers). */
  button(name: string, mode: "auto" | "refuse" | "timeout" | "wait"): void { this.admin(["button", name, mode]); }
  press(name: string, answer: "ok" | "cancel" = "ok"): void { this.admin(["press", name, answer]); }
  unplug(name: string): void { this.admin(["unplug", name]); }
  plug(name: string): void { this.admin(["plug", name]); }
  remove(name: string): void { this.admin(["remove", name]); }
  /** Test fixture: an SM2 signing key in the container (made if missing), as an earlier session left it; returns 04||x||y. */
  genKey(name: string, app: string, container: string): Buffer {
    return Buffer.from(this.admin(["gen-key", name, app, container]).trim(), "hex");
  }
  /** Test fixture: stores a DER certificate (in a file) in the container. */
  putCert(name: string, app: string, container: string, which: "sign" | "enc", derFile: string): void {
    this.admin(["put-cert", name, app, container, which, derFile]);
  }
  cleanup(): void { rmSync(this.dir, { recursive: true, force: true }); }
}

/** What `skf-softkey-admin show` prints (hex for keys, 04||x||y, and DER certificates). */
export interface SoftkeyContents {
  name: string;
  label: string;
  serial: string;
  manufacturer: string;
  hwVersion: string;
  fwVersion: string;
  totalSpace: number;
  usedSpace: number;
  devAuthRemain: number;
  envelopeLayout: "right" | "left";
  applications: {
    name: string;
    userRetries: { max: number; remain: number; default: boolean };
    adminRetries: { max: number; remain: number; default: boolean };
    containers: { name: string; type: "ECC" | "RSA" | "empty"; signPublicKey: string; encPublicKey: string; signCertificate: string; encCertificate: string }[];
  }[];
}

/**
 * A fresh software-key directory (SKF_SOFTKEY_DIR set to it) and the agent's SKF backend opened on the
 * built library, with the line every SKF test prints to say the key is the project's stand-in.
 * `close()` closes the backend and removes the directory.
 */
export async function openSoftkeyBackend(): Promise<{ keys: SoftkeyDir; backend: SkfBackend; close(): Promise<void> }> {
  const build = ensureSoftkey();
  console.log(`# SKF library under test: ${build.library} — skf-softkey, the project's software stand-in for a vendor's SKF library, not a vendor's`);
  const keys = new SoftkeyDir(build);
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  const backend = await SkfBackend.open(build.library);
  return { keys, backend, close: async () => { await backend.close(); keys.cleanup(); } };
}


