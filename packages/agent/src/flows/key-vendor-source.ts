import { defaultKeyVendors, type KeyVendorTable } from "@ukey/policy";
import type { KeyStoreBackend } from "../keys/key-store.js";
import type { OpenBackendOptions } from "../keys/open-backend.js";
import { ServerClient } from "../server-client.js";
import type { ServerConnection } from "./flow-types.js";

/** How long one server's table is reused before it is read again. */
const keepMs = 10 * 60 * 1000;
/**
 * How long the built-in table stands in for a server that could not be read, before it is asked again: a holder
 * without network (ukey init after a forgotten PIN, the agent's status polled by the portal) waits for a silent host
 * once a minute at most, not at every command or poll.
 */
const fallbackKeepMs = 60 * 1000;
/** The wait for the table: short, as the command that asked for it goes on without it. */
const readTimeoutMs = 5_000;
const cache = new Map<string, { table: KeyVendorTable; at: number; keep: number }>();

/**
 * The key vendor table the institution's server publishes (GET
 * /api/v1/key-vendors: the built-in table with the operator's `keyVendors`
 * applied), read once per server every ten minutes. When the server cannot
 * be reached or answers something that is not a valid table, the built-in
 * table is used for a minute and `onFallback` learns why: the flow that
 * asked goes on and meets the server's own error at its next call. Never
 * throws.
 */
export async function institutionKeyVendors(server: ServerConnection, onFallback?: (e: unknown) => void, now: () => number = Date.now): Promise<KeyVendorTable> {
  const hit = cache.get(server.url);
  if (hit && now() - hit.at < hit.keep) return hit.table;
  try {
    const table = await new ServerClient(server, readTimeoutMs).keyVendors();
    cache.set(server.url, { table, at: now(), keep: keepMs });
    return table;
  } catch (e) {
    cache.set(server.url, { table: defaultKeyVendors, at: now(), keep: fallbackKeepMs });
    onFallback?.(e);
    return defaultKeyVendors;
  }
}

/** Forgets every server's table (for tests that change a server's configuration). */
export function forgetKeyVendors(): void {
  cache.clear();
}

/**
 * The key store every command and the local API use: openBackend with the
 * institution's key vendor table (institutionKeyVendors), so that
 * `ukey doctor`, status and the portal's diagnostics name a key, check its
 * SM2 mechanisms and give its advice by the same table renewal and
 * download log in with. Without a server (none configured) the built-in
 * table; a server that cannot be reached gives the built-in table too, as
 * renewal does, and `onFallback` learns why. A PKCS#12 file the holder
 * named needs no table, and the server is not asked.
 * @throws what openBackend throws.
 */
export async function openInstitutionBackend(server: ServerConnection, opts: OpenBackendOptions = {}, onFallback?: (e: unknown) => void): Promise<KeyStoreBackend> {
  // Loaded here, not at the top: the flows that import this file need no key library loaded.
  const { openBackend } = await import("../keys/open-backend.js");
  if (opts.pkcs12 !== undefined || opts.keyVendors || !server.url) return openBackend(opts);
  return openBackend({ ...opts, keyVendors: await institutionKeyVendors(server, onFallback) });
}
