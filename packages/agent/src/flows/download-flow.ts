import { UkeyError, formatPolicyDate, isUkeyError, keyAlgorithms, shortSerial, type KeyAlgorithm } from "@ukey/policy";
import { objectLabels } from "../keys/key-store.js";
import type { CertificatePreview } from "../prompter.js";
import { ServerClient, type DownloadCheck } from "../server-client.js";
import { derOfPem } from "./certificate-id.js";
import { maybeCrash } from "./fault.js";
import { encryptionHalfOf, installEncryptionHalf } from "./pair-install.js";
import { previewText } from "./preview-text.js";
import type { DownloadRequest, FlowContext, IssuedCertificate } from "./flow-types.js";
import { openSession, report } from "./token-access.js";
import { institutionKeyVendors } from "./key-vendor-source.js";
import { withRoomOnToken } from "./storage-room.js";
import { installRecoveredKeys, recipientKeys, recipientProofs, settleRecipients } from "./recovered-keys.js";

/**
 * Downloads a certificate with a reference number and an authorization
 * code onto a token (empty, freshly initialised, or holding others): a new
 * key on the token labelled pending(download-REF), its CSR with both codes,
 * the certificate installed beside it and both labelled current(serial).
 * An interrupted download is finished by running it again with the same
 * codes: the pending key is reused and the server delivers the same
 * certificate again.
 * The codes are checked with the server before the PIN is asked, and the
 * certificate they authorize is shown for the holder to confirm (seed 004 §4.5).
 * @throws UkeyError OPERATION_CANCELLED (the holder said no), CONFIRMATION_REQUIRED (no terminal and no --yes), DOWNLOAD_CODE_INVALID, CODE_INVALID, CODE_EXPIRED, CODE_ALREADY_USED, CODE_ATTEMPTS_EXCEEDED, CODE_REVOKED, TOKEN_*, SERVER_*.
 */
export async function downloadFlow(ctx: FlowContext, request: DownloadRequest & { algorithm?: KeyAlgorithm }): Promise<{ certificate: IssuedCertificate; encryptionCertificate?: IssuedCertificate }> {
  const ref = request.referenceNumber.replace(/[\s-]/g, "");
  if (!/^\d{10}$/.test(ref)) throw new UkeyError("CODE_INVALID", { detail: "a reference number has 10 digits" });
  const code = request.authorizationCode.trim();
  if (code === "") throw new UkeyError("CODE_INVALID", { detail: "no authorization code" });
  const client = new ServerClient(ctx.server);
  const p = ctx.prompter;
  report(p, "check-codes", "正在核对参考号和授权码", "Checking the reference number and authorization code");
  let check: DownloadCheck | undefined;
  try {
    check = await client.checkDownloadCodes(ref, code);
  } catch (e) {
    // Spent codes may still finish a download an earlier run left (the same key gets the same certificate): the server decides that below.
    if (!isUkeyError(e, "CODE_ALREADY_USED")) throw e;
  }
  // Seed 004 §4.5: the holder checks the authorized certificate before the key is touched.
  const c = check?.certificate;
  const algorithm = request.algorithm ?? defaultAlgorithm(ctx.backend.kind, c?.keyAlgorithms);
  if (c) {
    const preview: CertificatePreview = {
      kind: "download",
      next: { subject: c.subject, notBefore: c.notBefore, notAfter: c.notAfter, pair: c.pair, profile: { zh: c.profile["zh-CN"], en: c.profile.en }, algorithm },
    };
    const go = await p.confirm({
      question: "请核对授权下载的证书信息，确认后再输入 PIN。/ Check the certificate these codes authorize, then confirm before the PIN.",
      consequences: [previewText(preview, "zh"), previewText(preview, "en")],
      preview,
    });
    if (!go) throw new UkeyError("OPERATION_CANCELLED");
  }
  report(p, "read-token", "正在读取 UKey", "Reading the key");
  const session = await openSession(ctx.backend, p, request.tokenSerial, "download", { vendors: await institutionKeyVendors(ctx.server) });
  try {
    const label = objectLabels.pending(`download-${ref}`);
    let key = (await session.listKeys()).find((k) => k.label === label);
    // The download itself finished (its key relabelled) but a run died before its receiving keys were: finish that first.
    if (!key) await settleRecipients(session, ref);
    const generated = !key;
    if (!key) {
      report(p, "generate-key", "正在 UKey 中生成新的密钥对（私钥不会离开 UKey）", "Generating the new key pair on the key (the private key never leaves it)");
      // A pair's RSA signing key opens its encryption key's envelope on the token (PKCS#11 C_UnwrapKey), then signs only.
      const unwrap = !!c?.pair && algorithm.startsWith("rsa");
      key = await withRoomOnToken(session, () => session.generateKeyPair(algorithm, label, undefined, { unwrap }), { keep: [], prompter: p, ...(ctx.fault ? { fault: ctx.fault } : {}) });
      maybeCrash(ctx.fault, "after-keygen");
    }
    // A key recovery's codes: one receiving key per recovered old encryption key, each in a container of its own.
    const recipients = algorithm === "sm2"
      ? await recipientKeys(session, ref, check ? check.recoveredKeys ?? 0 : undefined, { prompter: p, fault: ctx.fault })
      : { keys: [], made: [] };
    report(p, "submit-csr", "正在用参考号和授权码下载证书", "Downloading the certificate with the reference number and authorization code");
    const csr = await session.createCsr(key.id, "");
    let answer;
    try {
      const proofs = await recipientProofs(session, recipients.keys, csr);
      answer = await client.download(ref, code, csr, request.tokenSerial, () => maybeCrash(ctx.fault, "after-csr"), proofs);
    } catch (e) {
      // Refused for good (wrong or spent code, unfit key): the keys made for it go, and the token is as it was.
      // Unanswered (network, server down): they stay, so the same codes with the same keys finish the download later.
      if (isUkeyError(e) && !/^(SERVER_|CA_UNREACHABLE|DATABASE_UNAVAILABLE|DATABASE_READ_ONLY|INTERNAL)/.test(e.code)) {
        const made = [...(generated ? [key.id] : []), ...recipients.made];
        if (made.length) await session.deleteObjects(made);
      }
      throw e;
    }
    maybeCrash(ctx.fault, "after-issue");
    report(p, "install", "正在把证书写入 UKey", "Writing the certificate to the key");
    const keyId = key.id;
    const installed = await withRoomOnToken(session, () => session.installCertificate(derOfPem(answer.pem), keyId, label),
      { keep: [keyId], prompter: p, ...(ctx.fault ? { fault: ctx.fault } : {}) });
    maybeCrash(ctx.fault, "after-install");
    const half = encryptionHalfOf(answer, client.url);
    const encryption = half && await installEncryptionHalf(session, key.id, half, { prompter: p, fault: ctx.fault, label });
    if (answer.recoveredKeys?.length) {
      // Each recovered key enveloped for its own receiving key goes into that key's container. One enveloped for the new signing
      // key (a key store that cannot import envelopes, or a server that took no receiving keys) cannot be installed beside the
      // pair's own encryption key: it stays escrowed, and the holder is told.
      const { installed: n, escrowed } = await installRecoveredKeys(session, recipients.keys, answer.recoveredKeys, { prompter: p, fault: ctx.fault });
      if (n) report(p, "install", `已把 ${n} 把恢复的旧加密密钥写入 UKey，旧的加密数据可以再次读取`, `${n} recovered old encryption key(s) written to the key: the old encrypted data is readable again`);
      if (escrowed) {
        report(p, "install", `有 ${escrowed} 把恢复的旧加密密钥未写入这把 UKey，仍由密钥管理中心托管`,
          `${escrowed} recovered old encryption key(s) were not written to this key; they stay escrowed at the key management centre`);
      }
    }
    await session.relabel(key.id, objectLabels.current(installed.serialHex));
    await settleRecipients(session, ref);
    report(p, "done", `下载完成：证书（序列号尾号 ${shortSerial(installed.serialHex)}），有效期至 ${formatPolicyDate(Date.parse(answer.notAfter))}`, `Downloaded: the certificate (serial ending ${shortSerial(installed.serialHex)}) is valid until ${formatPolicyDate(Date.parse(answer.notAfter))}`);
    return {
      certificate: { serialHex: installed.serialHex, subject: installed.subject, notBefore: answer.notBefore, notAfter: answer.notAfter, pem: answer.pem + answer.chainPem },
      ...(encryption && answer.encryptionCertificate ? {
        encryptionCertificate: {
          serialHex: encryption.serialHex, subject: encryption.subject, notBefore: answer.encryptionCertificate.notBefore,
          notAfter: answer.encryptionCertificate.notAfter, pem: answer.encryptionCertificate.pem + answer.chainPem,
        },
      } : {}),
    };
  } finally {
    await session.close();
  }
}

/** The key to make when none is asked for: SM2 on an SKF key, else P-256 unless the certificate's profile allows only others. */
function defaultAlgorithm(kind: string, allowed: readonly string[] | undefined): KeyAlgorithm {
  if (kind === "skf") return "sm2";
  const known = (allowed ?? []).filter((a): a is KeyAlgorithm => (keyAlgorithms as readonly string[]).includes(a));
  return known.length === 0 || known.includes("p256") ? "p256" : known[0]!;
}
