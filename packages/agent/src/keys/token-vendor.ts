import { detectKeyVendor, defaultKeyVendors, type KeyVendorMatch, type KeyVendorTable } from "@ukey/policy";
import type { TokenInfo } from "./key-store.js";

/**
 * The vendor, generation and holder guidance of a token, from the key
 * vendor table (default: @ukey/policy's; the server's configured table when
 * the caller has it). Matches on serial, PKCS#11 (or SKF DEVINFO) manufacturer and model,
 * never on the label. undefined when nothing matches, and for file tokens.
 */
export function vendorOf(token: TokenInfo, table: KeyVendorTable = defaultKeyVendors): KeyVendorMatch | undefined {
  if (token.backend === "pkcs12") return undefined;
  return detectKeyVendor({ serial: token.serial, manufacturerId: token.manufacturer, model: token.model, label: token.label }, table);
}
