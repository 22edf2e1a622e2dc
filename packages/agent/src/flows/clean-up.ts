import { isUkeyError } from "@ukey/policy";
import { isEncryptionCertificate } from "../keys/certificate-fields.js";
import { objectLabels, type TokenCertificate, type TokenKey, type TokenSession } from "../keys/key-store.js";
import { ServerClient } from "../server-client.js";
import { certIdOf } from "./certificate-id.js";
import { maybeCrash } from "./fault.js";
import type { FaultPoint, FlowContext } from "./flow-types.js";
import { openSession, report, sameSerial } from "./token-access.js";

/** One object (certificate and key pair of one CKA_ID) the clean-up would remove, and why. */
export interface InvalidObject {
  id: string;
  label: string;
  why: "superseded" | "revoked" | "expired-replaced" | "orphan-key" | "abandoned-order";
  serialHex?: string;
  /** A certificate of this id may encrypt (key usage): removing it loses what was encrypted to its key. */
  encryption?: true;
}

/** What the server says of each certificate, or undefined when it cannot be asked. */
type ServerView = (cert: TokenCertificate) => Promise<"superseded" | "revoked" | "live" | "unknown" | undefined>;

/**
 * Decides what on a token is invalid: certificates the server says are
 * superseded or revoked; expired certificates that a valid certificate of
 * the same subject and issuer on the token replaces; keys with no
 * certificate (orphans), except a pending key of an order that is still
 * open or of a download. Never what `keep` names, never a certificate that
 * is the only one of its subject (an expired certificate may still be
 * renewable), never a pending key whose order the server cannot be asked
 * about. An object with an encryption certificate (key usage
 * keyEncipherment, dataEncipherment, keyAgreement, or none given: a pair's
 * encryption half, or one for both uses) is left out unless
 * `confirmEncryption` answers yes for the encryption objects the plan
 * would remove: without it, never (the holder's old encrypted data needs
 * the old key). Pure over what it is given.
 */
export async function planCleanUp(
  certs: TokenCertificate[], keys: TokenKey[], now: Date,
  opts: {
    keep?: Set<string>;
    /** Serials the caller knows the server has superseded. */
    superseded?: string[];
    serverView?: ServerView;
    orderState?: (orderId: string) => Promise<string | undefined | "unreachable">;
    /** Asks the holder whether these encryption objects may go; absent: they stay. */
    confirmEncryption?: (objects: InvalidObject[]) => Promise<boolean>;
  } = {},
): Promise<InvalidObject[]> {
  const keep = opts.keep ?? new Set<string>();
  const out: InvalidObject[] = [];
  const removed = new Set<string>();
  const views = new Map<string, Awaited<ReturnType<ServerView>>>();
  for (const c of certs) {
    // What is kept needs no question; what the caller already knows (the certificate an order just superseded) neither.
    if (keep.has(c.id) || objectLabels.pendingOrder(c.label)) continue;
    const known = opts.superseded?.some((serial) => sameSerial(serial, c.serialHex));
    views.set(c.id, known ? "superseded" : opts.serverView ? await opts.serverView(c) : undefined);
  }
  for (const c of certs) {
    if (keep.has(c.id) || objectLabels.pendingOrder(c.label)) continue;
    const v = views.get(c.id);
    if (v === "superseded" || v === "revoked") {
      out.push({ id: c.id, label: c.label, why: v, serialHex: c.serialHex });
      removed.add(c.id);
    }
  }
  for (const c of certs) {
    if (keep.has(c.id) || removed.has(c.id) || objectLabels.pendingOrder(c.label) || c.notAfter.getTime() >= now.getTime()) continue;
    const replacement = certs.find((o) => o !== c && !removed.has(o.id) && o.subject === c.subject && o.issuer === c.issuer
      && o.notAfter.getTime() > now.getTime() && o.notBefore.getTime() <= now.getTime() && views.get(o.id) !== "revoked" && views.get(o.id) !== "superseded");
    if (replacement) {
      out.push({ id: c.id, label: c.label, why: "expired-replaced", serialHex: c.serialHex });
      removed.add(c.id);
    }
  }
  const certIds = new Set(certs.map((c) => c.id));
  for (const k of keys) {
    if (keep.has(k.id) || certIds.has(k.id) || removed.has(k.id)) continue;
    const orderId = objectLabels.pendingOrder(k.label);
    if (orderId !== undefined) {
      if (orderId.startsWith("download-") || !opts.orderState) continue;
      const state = await opts.orderState(orderId);
      // An open order may still need this key; a server we cannot ask might say so.
      if (state === "unreachable" || (state !== undefined && !["closed", "completed", "failed", "cancelled"].includes(state))) continue;
      out.push({ id: k.id, label: k.label, why: "abandoned-order" });
    } else {
      out.push({ id: k.id, label: k.label, why: "orphan-key" });
    }
    removed.add(k.id);
  }
  const encIds = new Set(certs.filter((c) => isEncryptionCertificate(c.der)).map((c) => c.id));
  for (const o of out) if (encIds.has(o.id)) o.encryption = true;
  const encryption = out.filter((o) => o.encryption);
  if (encryption.length === 0 || (opts.confirmEncryption && await opts.confirmEncryption(encryption))) return out;
  return out.filter((o) => !o.encryption);
}

/** The server's view of a token's certificates, for planCleanUp; undefined for each when the server is unreachable. */
export function serverViewOf(client: ServerClient, channel: "web" | "cli"): ServerView {
  let reachable = true;
  return async (cert) => {
    if (!reachable) return undefined;
    try {
      const info = await client.renewalInfo(certIdOf(cert.der), channel);
      if (!sameSerial(info.certificate.serial, cert.serialHex)) return "unknown";
      // On hold (冻结) is not the end: the institution may lift it, so the certificate and its key stay.
      if (info.state === "revoked" && info.certificate.revocationReason === "certificateHold") return "live";
      return info.state === "superseded" || info.state === "revoked" ? info.state : "live";
    } catch (e) {
      if (isUkeyError(e, "CERT_NOT_FOUND", "CERT_ID_MALFORMED", "DER_MALFORMED")) return "unknown";
      if (isUkeyError(e, "SERVER_UNREACHABLE", "SERVER_RESPONSE_INVALID", "SERVER_CERT_UNTRUSTED")) {
        reachable = false;
        return undefined;
      }
      throw e;
    }
  };
}

/**
 * Whether an order is "open" or "closed" (completed, failed or cancelled),
 * "unreachable" when the server cannot be asked, undefined when it does not
 * know the order. Asks for the order's challenge, which anyone may: no
 * proof of possession is needed to learn that an order ended.
 */
export function orderStateOf(client: ServerClient): (orderId: string) => Promise<string | undefined | "unreachable"> {
  return async (orderId) => {
    try {
      return (await client.challenge(orderId)).open ? "open" : "closed";
    } catch (e) {
      if (isUkeyError(e, "ORDER_NOT_FOUND")) return undefined;
      return "unreachable";
    }
  };
}

/**
 * Removes the invalid objects of an open session, one CKA_ID at a time (so
 * an interruption leaves whole objects and the next run finishes). Returns
 * how many were removed.
 */
export async function removeInvalid(session: TokenSession, plan: InvalidObject[], fault?: FaultPoint): Promise<number> {
  let n = 0;
  for (const o of plan) {
    await session.deleteObjects([o.id]);
    n++;
    maybeCrash(fault, "during-cleanup");
  }
  return n;
}

/**
 * The `ukey clean-up` operation: removes expired-and-replaced and
 * superseded certificates with their keys, and orphan keys, never the
 * current ones nor a pending key of an open order. Without the server only
 * what the token itself shows is removed.
 */
export async function cleanUpFlow(ctx: FlowContext, request: { tokenSerial: string }): Promise<{ removed: number }> {
  const client = ctx.server.url ? new ServerClient(ctx.server) : undefined;
  const session = await openSession(ctx.backend, ctx.prompter, request.tokenSerial, "clean-up");
  try {
    report(ctx.prompter, "clean-up", "正在清理 UKey 中已失效的证书和密钥", "Removing expired and superseded objects from the key");
    const plan = await planCleanUp(await session.listCertificates(), await session.listKeys(), new Date(), {
      ...(client ? { serverView: serverViewOf(client, ctx.channel), orderState: orderStateOf(client) } : {}),
      confirmEncryption: (objects) => confirmEncryptionRemoval(ctx, objects),
    });
    return { removed: await removeInvalid(session, plan, ctx.fault) };
  } finally {
    await session.close();
  }
}

/**
 * Asks the holder whether encryption certificates and their keys may go:
 * what was encrypted to them cannot be opened afterwards. No answer (no
 * terminal to ask at) is no.
 */
async function confirmEncryptionRemoval(ctx: FlowContext, objects: InvalidObject[]): Promise<boolean> {
  const serials = objects.map((o) => o.serialHex ?? o.label).join(", ");
  try {
    return await ctx.prompter.confirm({
      question: `要删除加密证书 ${serials} 及其密钥吗？删除后，用它加密的旧文件和数据将无法再解密。/ Delete encryption certificate ${serials} and its key? Files and data encrypted to it can no longer be decrypted afterwards.`,
      consequences: [
        "不删除也可以：旧加密密钥留在 UKey 中，不影响新证书的使用。",
        "Keeping it is fine: the old encryption key stays on the UKey and does not get in the way of the new certificate.",
      ],
    });
  } catch (e) {
    if (isUkeyError(e, "CONFIRMATION_REQUIRED")) return false;
    throw e;
  }
}
