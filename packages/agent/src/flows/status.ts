import { defaultKeyVendors, detectKeyVendor, isUkeyError, policyDay, type KeyVendorTable } from "@ukey/policy";
import { isEncryptionCertificate } from "../keys/certificate-fields.js";
import type { TokenCertificate } from "../keys/key-store.js";
import { ServerClient, type RenewalInfo } from "../server-client.js";
import { certIdOf } from "./certificate-id.js";
import { planCleanUp } from "./clean-up.js";
import type { CertificateStatus, FlowContext, TokenStatus } from "./flow-types.js";
import { openSession } from "./token-access.js";

const adviceWindow: Record<RenewalInfo["state"], NonNullable<CertificateStatus["advice"]>["window"]> = {
  "not-yet": "not-yet-open", open: "open", "open-step-up": "open-step-up", closed: "closed", revoked: "closed", superseded: "closed",
};

/**
 * Every token present with its certificates: state in words, whole CST
 * days to expiry (the policy calendar the server uses), the server's
 * renewal advice when it answers, and how many objects a clean-up would
 * remove. Without a PIN only public objects are read (no keys: orphan keys
 * are not counted). The server being unreachable is not an error here: the
 * advice is left out. `channel` (default "cli") is the one whose renewal
 * window the advice gives: "web" for the portal. Each key's vendor is
 * named by `vendors` (default: the backend's keyVendors, else the
 * built-in table), the table renewal logs in with.
 * @throws UkeyError TOKEN_* from the backend.
 */
export async function statusFlow(ctx: Omit<FlowContext, "prompter" | "channel"> & { pin?: string; tokenSerial?: string; now?: Date; channel?: FlowContext["channel"]; vendors?: KeyVendorTable }): Promise<TokenStatus[]> {
  const vendors = ctx.vendors ?? ctx.backend.keyVendors ?? defaultKeyVendors;
  // The advice of the channel the holder will renew through: the portal's web window is not the CLI's.
  const channel = ctx.channel ?? "cli";
  const now = ctx.now ?? new Date();
  // Without a server (none configured) the token's own dates still answer.
  const client = ctx.server.url ? new ServerClient(ctx.server) : undefined;
  let reachable = client !== undefined;
  const tokens = (await ctx.backend.listTokens()).filter((t) => ctx.tokenSerial === undefined || t.serial === ctx.tokenSerial);
  const out: TokenStatus[] = [];
  for (const token of tokens) {
    let keys = undefined;
    let certs: TokenCertificate[];
    if (ctx.pin !== undefined) {
      const s = await ctx.backend.open(token.serial, ctx.pin);
      try {
        certs = await s.listCertificates();
        keys = await s.listKeys();
      } finally {
        await s.close();
      }
    } else {
      certs = await ctx.backend.listCertificates(token.serial);
    }
    const views = new Map<string, "superseded" | "revoked" | "live" | "unknown" | undefined>();
    const certificates: CertificateStatus[] = [];
    for (const c of certs) {
      let info: RenewalInfo | undefined;
      let unknown = false;
      if (reachable) {
        try {
          info = await client!.renewalInfo(certIdOf(c.der), channel);
        } catch (e) {
          if (isUkeyError(e, "CERT_NOT_FOUND", "DER_MALFORMED", "CERT_ID_MALFORMED")) unknown = true;
          else if (isUkeyError(e, "SERVER_UNREACHABLE", "SERVER_RESPONSE_INVALID", "SERVER_CERT_UNTRUSTED")) reachable = false;
          else throw e;
        }
      }
      const state = stateOf(c, info, unknown, now);
      // A certificate on hold stays on the key: the institution may lift the hold.
      views.set(c.id, state === "superseded" || state === "revoked" ? state : info ? "live" : unknown ? "unknown" : undefined);
      const { der: _der, ...certificate } = c;
      const s: CertificateStatus = { certificate, state, daysLeft: policyDay(c.notAfter) - policyDay(now) };
      if (isEncryptionCertificate(c.der) && certs.some((o) => o !== c && o.id === c.id && !isEncryptionCertificate(o.der))) s.pairHalf = "encryption";
      if (info) {
        s.advice = {
          window: adviceWindow[info.state],
          ...(info.opensAt ? { opensAt: info.opensAt } : {}),
          ...(info.closesAt ? { closesAt: info.closesAt } : {}),
          ...(info.lockedUntil ? { lockedUntil: info.lockedUntil } : {}),
          ...(info.login?.refusedFrom ? { loginRefusedFrom: info.login.refusedFrom } : {}),
          explanation: { zh: info.explanation["zh-CN"], en: info.explanation.en },
        };
      }
      certificates.push(s);
    }
    const invalid = await planCleanUp(certs, keys ?? [], now, { serverView: async (c) => views.get(c.id) });
    const vendor = detectKeyVendor({ serial: token.serial, manufacturerId: token.manufacturer, model: token.model, label: token.label }, vendors);
    out.push({
      token,
      ...(vendor ? { vendor: { name: vendor.vendor, ...(vendor.generation !== undefined ? { generation: String(vendor.generation) } : {}) } } : {}),
      certificates,
      invalidObjects: invalid.length,
      ...(ctx.pin === undefined && ctx.backend.certificatesNeedPin?.(token.serial) ? { certificatesHidden: true as const } : {}),
    });
  }
  return out;
}

/**
 * Without the server's advice (unreachable, or none configured) a
 * certificate this close to its end is called "expiring": the longest
 * notice period of the presets, so that losing the server never turns a
 * red state green.
 */
export const offlineNoticeDays = 90;

function stateOf(c: TokenCertificate, info: RenewalInfo | undefined, unknown: boolean, now: Date): CertificateStatus["state"] {
  if (info?.state === "revoked") return info.certificate.revocationReason === "certificateHold" ? "on-hold" : "revoked";
  if (info?.state === "superseded") return "superseded";
  if (now.getTime() < c.notBefore.getTime()) return "not-yet-valid";
  if (now.getTime() > c.notAfter.getTime()) return "expired";
  if (unknown) return "unknown";
  if (info) return now.getTime() >= Date.parse(info.noticeFrom) ? "expiring" : "valid";
  return policyDay(c.notAfter) - policyDay(now) <= offlineNoticeDays ? "expiring" : "valid";
}

/**
 * Opens the token with the holder's PIN (asked through the prompter: the
 * agent's own PIN window for the portal) and closes it again, then returns
 * its status. For a PKCS#12 file this is what makes its certificates
 * visible to the PIN-less listing (the backend remembers the public
 * certificates of its last session); for a PKCS#11 token it only proves
 * the PIN.
 * @throws UkeyError TOKEN_NOT_PRESENT, TOKEN_PIN_*, PFX_PASSWORD_INCORRECT, and what the prompter throws.
 */
export async function readCertificatesFlow(ctx: FlowContext, request: { tokenSerial: string }): Promise<{ tokens: TokenStatus[] }> {
  const session = await openSession(ctx.backend, ctx.prompter, request.tokenSerial, "read-certificates");
  await session.close();
  return { tokens: await statusFlow({ backend: ctx.backend, server: ctx.server, tokenSerial: request.tokenSerial, channel: ctx.channel }) };
}
