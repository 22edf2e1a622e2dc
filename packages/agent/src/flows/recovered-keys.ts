import { createHash } from "node:crypto";
import { UkeyError, recipientProofMessage } from "@ukey/policy";
import { objectLabels, type TokenKey, type TokenSession } from "../keys/key-store.js";
import type { Prompter } from "../prompter.js";
import type { DownloadAnswer } from "../server-client.js";
import { derOfPem } from "./certificate-id.js";
import { maybeCrash } from "./fault.js";
import type { FaultPoint } from "./flow-types.js";
import { report, sameSerial } from "./token-access.js";
import { withRoomOnToken } from "./storage-room.js";

/** The pending label of the key that receives recovered key `i` (from 1) of download `ref`: its own SKF container. */
export const recipientLabel = (ref: string, i: number): string => objectLabels.pending(`download-${ref}-r${i}`);

/**
 * The recipient keys of a download that carries `count` recovered keys: one
 * SM2 key per recovered key, each in a container of its own (an SKF key
 * opens an envelope only into the container of the key it is for, one
 * encryption key per container). Keys an earlier run made are reused; when
 * the count is unknown (the codes already spent, a lost answer) those keys
 * alone are used. None on a key store that cannot import an envelope.
 */
export async function recipientKeys(session: TokenSession, ref: string, count: number | undefined, opts: { prompter: Prompter; fault?: FaultPoint | undefined }): Promise<{ keys: TokenKey[]; made: string[] }> {
  if (!session.importEnvelopedKey) return { keys: [], made: [] };
  const existing = await session.listKeys();
  const keys: TokenKey[] = [];
  const made: string[] = [];
  for (let i = 1; count === undefined ? existing.some((k) => k.label === recipientLabel(ref, i)) : i <= count; i++) {
    const label = recipientLabel(ref, i);
    let key = existing.find((k) => k.label === label);
    if (!key) {
      report(opts.prompter, "generate-key", `正在 UKey 中为第 ${i} 把恢复的旧加密密钥生成接收密钥（私钥不会离开 UKey）`,
        `Generating the key that receives recovered old encryption key ${i} (the private key never leaves the key)`);
      key = await withRoomOnToken(session, () => session.generateKeyPair("sm2", label), { keep: [], prompter: opts.prompter, ...(opts.fault ? { fault: opts.fault } : {}) });
      made.push(key.id);
    }
    keys.push(key);
  }
  return { keys, made };
}

/** Each recipient key's proof over this CSR, for the download request. */
export async function recipientProofs(session: TokenSession, keys: readonly TokenKey[], csrPem: string): Promise<{ spki: string; signature: string }[]> {
  const m = /-----BEGIN CERTIFICATE REQUEST-----([\s\S]*?)-----END CERTIFICATE REQUEST-----/.exec(csrPem);
  if (!m) throw new UkeyError("PEM_MALFORMED", { params: { reason: "no certificate request" } });
  // One definition of these bytes, shared with the server's check (@ukey/policy).
  const message = recipientProofMessage(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"), (b) => createHash("sha256").update(b).digest());
  const out: { spki: string; signature: string }[] = [];
  for (const k of keys) out.push({ spki: Buffer.from(k.spki).toString("base64"), signature: Buffer.from(await session.sign(k.id, message)).toString("base64") });
  return out;
}

/**
 * Installs each recovered key the server enveloped for one of `keys` into
 * that key's container, with its old encryption certificate. A key already
 * there (an earlier run) is not imported again. The containers keep their
 * pending mark: it is how a run after an interruption finds every receiving
 * key again, and the server takes the receiving keys only all together, so
 * they are relabelled only once the download is done (settleRecipients).
 * Answers how many were installed and how many stay escrowed (enveloped for
 * the signing key: a server that took no recipients).
 */
export async function installRecoveredKeys(session: TokenSession, keys: readonly TokenKey[], recovered: NonNullable<DownloadAnswer["recoveredKeys"]>,
  opts: { prompter: Prompter; fault?: FaultPoint | undefined }): Promise<{ installed: number; escrowed: number }> {
  let installed = 0;
  for (const [i, r] of recovered.entries()) {
    const recipient = typeof r.recipientSpki === "string" ? keys.find((k) => Buffer.from(k.spki).toString("base64") === r.recipientSpki) : undefined;
    if (!recipient) continue;
    const certs = await session.listCertificates();
    const certDone = r.certificate && certs.some((c) => c.id === recipient.id && sameSerial(c.serialHex, r.certificate!.serial) && c.hasKey);
    if (!certDone) {
      report(opts.prompter, "install", `正在把第 ${i + 1} 把恢复的旧加密密钥导入 UKey（只有它自己的接收密钥能打开）`,
        `Importing recovered old encryption key ${i + 1} into the key (only its own receiving key opens it)`);
      // Idempotent: the very key already in the container (an earlier run died after it) is not imported twice.
      await session.importEnvelopedKey!(recipient.id, new Uint8Array(Buffer.from(r.envelope.value, "base64")));
      if (r.certificate) await session.installCertificate(derOfPem(r.certificate.pem), recipient.id, recipient.label);
      maybeCrash(opts.fault, "after-recovered-key");
    }
    installed++;
  }
  return { installed, escrowed: recovered.length - installed };
}

/**
 * Relabels the receiving keys of download `ref` that hold their recovered
 * key's certificate to current(that certificate's serial): the last step
 * of a download, after the signing key's relabel. Run also when a download
 * starts whose signing key is no longer pending (an earlier run died
 * between the two relabels). A receiving key without its certificate stays
 * pending, for the download's next run. Answers how many were relabelled.
 */
export async function settleRecipients(session: TokenSession, ref: string): Promise<number> {
  const prefix = objectLabels.pending(`download-${ref}-r`);
  const waiting = (await session.listKeys()).filter((k) => k.label.startsWith(prefix) && /^[0-9]+$/.test(k.label.slice(prefix.length)));
  if (waiting.length === 0) return 0;
  const certs = await session.listCertificates();
  let n = 0;
  for (const k of waiting) {
    const cert = certs.find((c) => c.id === k.id && c.hasKey);
    if (!cert) continue;
    await session.relabel(k.id, objectLabels.current(cert.serialHex));
    n++;
  }
  return n;
}
