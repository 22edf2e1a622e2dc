import { defaultKeyVendors, type KeyVendorTable } from "@ukey/policy";
import { ServerClient } from "../server-client.js";
import type { ServerConnection } from "./flow-types.js";

/** How long one server's table is reused before it is read again. */
const keepMs = 10 * 60 * 1000;
const cache = new Map<string, { table: KeyVendorTable; at: number }>();

/**
 * The key vendor table the institution's server publishes (GET
 * /api/v1/key-vendors: the built-in table with the operator's `keyVendors`
 * applied), read once per server every ten minutes. When the server cannot
 * be reached or answers something that is not a valid table, the built-in
 * table is used and `onFallback` learns why: the flow that asked goes on
 * and meets the server's own error at its next call. Never throws.
 */
export async function institutionKeyVendors(server: ServerConnection, onFallback?: (e: unknown) => void, now: () => number = Date.now): Promise<KeyVendorTable> {
  const hit = cache.get(server.url);
  if (hit && now() - hit.at < keepMs) return hit.table;
  try {
    const table = await new ServerClient(server, 15_000).keyVendors();
    cache.set(server.url, { table, at: now() });
    return table;
  } catch (e) {
    onFallback?.(e);
    return defaultKeyVendors;
  }
}

/** Forgets every server's table (for tests that change a server's configuration). */
export function forgetKeyVendors(): void {
  cache.clear();
}
