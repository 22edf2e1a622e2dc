import { existsSync } from "node:fs";
import { resolve } from "node:path";

/** A PKCS#11 library the agent looks for, and whose keys it drives. */
export interface KnownModule {
  path: string;
  /** Who publishes it, for ukey doctor. */
  vendor: string;
  platform: "linux" | "darwin" | "win32";
}

const linux = (vendor: string, ...paths: string[]): KnownModule[] => paths.map((path) => ({ path, vendor, platform: "linux" }));
const darwin = (vendor: string, ...paths: string[]): KnownModule[] => paths.map((path) => ({ path, vendor, platform: "darwin" }));
const win32 = (vendor: string, ...paths: string[]): KnownModule[] => paths.map((path) => ({ path, vendor, platform: "win32" }));

/**
 * Well-known install paths of PKCS#11 modules, vendors' hardware first and
 * the generic and test modules (OpenSC, SoftHSM2) last.
 *
 * The vendors' file names come from their published driver packages (as
 * listed, for example, by jsign's PKCS11Tokens table and Feitian's ePass
 * integration notes). None of those keys is available here, so these
 * entries cannot be tested. Longmai (GM3000), Haitai and Tendyron publish
 * mainly SKF (GM/T 0016) libraries, which are not PKCS#11, and no PKCS#11
 * file name of theirs could be confirmed, so none is guessed here: their
 * keys are reached through OpenSC or a module named with --module or
 * UKEY_PKCS11_MODULE. Only SoftHSM2 and OpenSC are exercised by the tests.
 */
export const knownModules: readonly KnownModule[] = [
  // Feitian ePass2003 (飞天诚信)
  ...linux("Feitian", "/usr/lib/libcastle.so.1.0.0", "/usr/local/lib/libcastle.so.1.0.0", "/usr/lib/libcastle.so"),
  ...darwin("Feitian", "/usr/local/lib/libcastle.1.0.0.dylib"),
  ...win32("Feitian", "C:\\Windows\\System32\\eps2003csp11.dll"),
  // Watchdata (握奇)
  ...linux("Watchdata", "/usr/lib/libwdpkcs.so", "/usr/local/lib/libwdpkcs.so", "/usr/local/lib64/libwdpkcs.so",
    "/usr/lib/watchdata/lib/libwdpkcs.so", "/opt/watchdata/lib64/libwdpkcs.so"),
  ...darwin("Watchdata", "/usr/local/lib/libwdpkcs.dylib"),
  ...win32("Watchdata", "C:\\Windows\\System32\\WDPKCS.dll"),
  // Giesecke+Devrient (捷德)
  ...win32("Giesecke+Devrient", "C:\\Windows\\System32\\gclib.dll"),
  // SafeNet / Thales eToken, common beside Chinese keys in banks
  ...linux("SafeNet", "/usr/lib/libeTPkcs11.so", "/usr/lib64/libeTPkcs11.so"),
  ...darwin("SafeNet", "/usr/local/lib/libeTPkcs11.dylib"),
  ...win32("SafeNet", "C:\\Windows\\System32\\eTPKCS11.dll"),
  // OpenSC: generic smart cards and many PIV / PKCS#15 keys
  ...linux("OpenSC", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so", "/usr/lib/opensc-pkcs11.so", "/usr/local/lib/opensc-pkcs11.so"),
  ...darwin("OpenSC", "/Library/OpenSC/lib/opensc-pkcs11.so", "/opt/homebrew/lib/opensc-pkcs11.so", "/usr/local/lib/opensc-pkcs11.so"),
  ...win32("OpenSC", "C:\\Windows\\System32\\opensc-pkcs11.dll", "C:\\Program Files\\OpenSC Project\\OpenSC\\pkcs11\\opensc-pkcs11.dll"),
  // SoftHSM2: the software token of tests and demos
  ...linux("SoftHSM", "/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so", "/usr/lib64/pkcs11/libsofthsm2.so"),
  ...darwin("SoftHSM", "/opt/homebrew/lib/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so"),
  ...win32("SoftHSM", "C:\\SoftHSM2\\lib\\softhsm2-x64.dll"),
];

/** Options of findModules. */
export interface FindModulesOptions {
  /** A module named by the holder (--module): first, whether it exists or not, so a wrong path is reported. */
  explicit?: string;
  /** The environment to read UKEY_PKCS11_MODULE from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Platform whose well-known paths are tried (default process.platform). */
  platform?: NodeJS.Platform;
  /** File test, for tests of the list itself (default fs.existsSync). */
  exists?: (path: string) => boolean;
}

/**
 * The PKCS#11 modules to try, in order: the explicit path, then
 * UKEY_PKCS11_MODULE, then the well-known paths of this platform that
 * exist. An explicit or environment path is returned even when it does not
 * exist (opening it then says TOKEN_DRIVER_MISSING). No duplicates.
 */
export function findModules(opts: FindModulesOptions = {}): string[] {
  return candidates(opts, "UKEY_PKCS11_MODULE", knownModules);
}

/** The explicit path, then the environment variable's, then the known paths of this platform that exist; no duplicates. */
function candidates(opts: FindModulesOptions, envVariable: string, known: readonly KnownModule[]): string[] {
  const env = opts.env ?? process.env;
  const exists = opts.exists ?? existsSync;
  const platform = opts.platform ?? process.platform;
  const out: string[] = [];
  const add = (p: string) => {
    if (!out.includes(p)) out.push(p);
  };
  if (opts.explicit) add(resolve(opts.explicit));
  const fromEnv = env[envVariable]?.trim();
  if (fromEnv) add(resolve(fromEnv));
  for (const m of known) if (m.platform === platform && exists(m.path)) add(m.path);
  return out;
}

/**
 * Well-known install paths of vendors' SKF (GM/T 0016) libraries, which
 * most Chinese UKeys ship instead of a PKCS#11 module. Only names seen in
 * published material are listed: Longmai's GM3000 library, as GmSSL's SKF
 * documentation names it. No vendor's key is available here, so no entry
 * is tested; other vendors' keys are reached through UKEY_SKF_LIBRARY or a
 * path the holder names, until their file names are confirmed.
 */
export const knownSkfLibraries: readonly KnownModule[] = [
  // Longmai GM3000 (龙脉)
  ...linux("Longmai", "/usr/lib/libgm3000.1.0.so", "/usr/local/lib/libgm3000.1.0.so"),
  ...win32("Longmai", "C:\\Windows\\System32\\mtoken_gm3000.dll"),
];

/**
 * The SKF libraries to try, in order: the explicit path, then
 * UKEY_SKF_LIBRARY, then the well-known paths of this platform that exist.
 * An explicit or environment path is returned even when it does not exist
 * (opening it then says TOKEN_DRIVER_MISSING). No duplicates.
 */
export function findSkfLibraries(opts: FindModulesOptions = {}): string[] {
  return candidates(opts, "UKEY_SKF_LIBRARY", knownSkfLibraries);
}
