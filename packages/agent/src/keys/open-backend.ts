import { UkeyError, isUkeyError, type KeyVendorTable } from "@ukey/policy";
import type { KeyStoreBackend } from "./key-store.js";
import { findModules, findSkfLibraries } from "./module-paths.js";
import { Pkcs11Backend } from "./pkcs11-backend.js";
import { agentHome, defaultFileTokenPath, Pkcs12Backend } from "./pkcs12-backend.js";
import { SkfBackend } from "./skf-backend.js";

/** What openBackend opens. */
export interface OpenBackendOptions {
  /** A PKCS#11 module path (--module). */
  module?: string;
  /** A PKCS#12 file (--file); it wins over everything else. */
  pkcs12?: string;
  /** The agent's home directory for the default file token (default: UKEY_AGENT_HOME, else ~/.ukey). */
  home?: string;
  /** Environment for UKEY_PKCS11_MODULE and UKEY_AGENT_HOME (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Well-known module paths to try (default: findModules' list for this platform); for tests. */
  discovered?: string[];
  /** An SKF (GM/T 0016) library path (--skf); UKEY_SKF_LIBRARY otherwise. */
  skf?: string;
  /** The key vendor table the store carries (KeyStoreBackend.keyVendors: PKCS#11 modules' `pkcs11Sm2` values, vendor names, advice); default the built-in one. */
  keyVendors?: KeyVendorTable;
  /** Well-known SKF library paths to try (default: findSkfLibraries' list for this platform); for tests. */
  discoveredSkf?: string[];
}

/**
 * The key store to use, in this order:
 * 1. `pkcs12`: that file;
 * 2. `module`, else UKEY_PKCS11_MODULE: that module, which must load
 *    (TOKEN_DRIVER_MISSING, HSM_MODULE_LOAD_FAILED otherwise);
 * 3. `skf`, else UKEY_SKF_LIBRARY: that SKF library, which must load
 *    (TOKEN_DRIVER_MISSING, SKF_LIBRARY_INVALID, SKF_FUNCTION_MISSING);
 * 4. the first well-known module (module-paths.ts) that loads and has a
 *    token present now; modules without a token are closed again;
 * 5. the first well-known SKF library that loads and has a device present;
 * 6. the agent's default file token (defaultFileTokenPath), which may not
 *    exist yet (listTokens is then empty until it is initialised).
 * The caller closes what it gets.
 */
export async function openBackend(opts: OpenBackendOptions = {}): Promise<KeyStoreBackend> {
  const env = opts.env ?? process.env;
  const withTable = opts.keyVendors ? { keyVendors: opts.keyVendors } : {};
  if (opts.pkcs12 !== undefined) {
    if (opts.pkcs12.trim() === "") throw new UkeyError("CLI_USAGE", { params: { reason: "the PKCS#12 file path is empty" } });
    return new Pkcs12Backend(opts.pkcs12, withTable);
  }
  const named = opts.module?.trim() || env.UKEY_PKCS11_MODULE?.trim();
  if (named) return new Pkcs11Backend(named, withTable);
  const skf = opts.skf?.trim() || env.UKEY_SKF_LIBRARY?.trim();
  if (skf) return SkfBackend.open(skf, withTable);
  for (const path of opts.discovered ?? findModules({ env: {} })) {
    let backend: Pkcs11Backend | undefined;
    try {
      backend = new Pkcs11Backend(path, withTable);
      if ((await backend.listTokens()).length > 0) return backend;
    } catch (e) {
      // A broken or foreign library in a well-known place is not the holder's choice: try the next.
      if (!isUkeyError(e)) throw e;
    }
    await backend?.close();
  }
  for (const path of opts.discoveredSkf ?? findSkfLibraries({ env: {} })) {
    let backend: SkfBackend | undefined;
    try {
      backend = await SkfBackend.open(path, withTable);
      if ((await backend.listTokens()).length > 0) return backend;
    } catch (e) {
      if (!isUkeyError(e)) throw e;
    }
    await backend?.close();
  }
  return new Pkcs12Backend(defaultFileTokenPath(opts.home ?? agentHome(env)), withTable);
}
