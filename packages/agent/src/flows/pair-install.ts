import { UkeyError } from "@ukey/policy";
import type { TokenCertificate, TokenSession } from "../keys/key-store.js";
import type { Prompter } from "../prompter.js";
import type { EncryptionHalf } from "../server-client.js";
import { derOfPem } from "./certificate-id.js";
import { maybeCrash } from "./fault.js";
import type { FaultPoint } from "./flow-types.js";
import { report, sameSerial } from "./token-access.js";

/** The envelope format of SM2 pairs: a GM/T 0016 ENVELOPEDKEYBLOB for the new signing key (docs/envelopes.md). */
export const sm2EnvelopeFormat = "gmt0016-enveloped-key-blob";

/** The encryption half of a server answer, when it carries one (a pair profile). Either part alone is a malformed answer. */
export function encryptionHalfOf(answer: Partial<EncryptionHalf>, server: string): EncryptionHalf | undefined {
  const { encryptionCertificate, envelope } = answer;
  if (!encryptionCertificate && !envelope) return undefined;
  if (!encryptionCertificate || !envelope) {
    throw new UkeyError("SERVER_RESPONSE_INVALID", { params: { server }, detail: "a pair's encryption certificate comes with its envelope" });
  }
  return { encryptionCertificate, envelope };
}

/**
 * Puts a pair's encryption half in the container of signing key `keyId`,
 * after its signing certificate: the encryption key from its envelope
 * (SKF_ImportECCKeyPair: only the new signing key on the token opens it),
 * then the encryption certificate beside it. Each step looks first whether
 * an earlier run did it (the certificate there, or the envelope's key
 * there), so an interruption anywhere is finished by running again.
 * @throws UkeyError ENVELOPE_MALFORMED, TOKEN_CONTAINER_FOREIGN (another
 *   encryption key in the container), CERT_KEY_MISMATCH, TOKEN_OPERATION_FAILED
 *   (a key store that cannot take an envelope of this format), TOKEN_*.
 */
export async function installEncryptionHalf(
  session: TokenSession, keyId: string, half: EncryptionHalf, opts: { prompter: Prompter; fault?: FaultPoint | undefined; label: string },
): Promise<TokenCertificate> {
  const enc = half.encryptionCertificate;
  const there = (await session.listCertificates()).find((c) => c.id === keyId && sameSerial(c.serialHex, enc.serial) && c.hasKey);
  if (there) return there;
  if (half.envelope.format !== sm2EnvelopeFormat || !session.importEnvelopedKey) {
    throw new UkeyError("TOKEN_OPERATION_FAILED", {
      params: { reason: `this UKey cannot take an encryption key enveloped as ${half.envelope.format}` },
      detail: "SM2 pairs (gmt0016-enveloped-key-blob) are imported on SKF keys",
    });
  }
  report(opts.prompter, "install", "正在把加密密钥导入 UKey（只有 UKey 中的新签名密钥能打开它）", "Importing the encryption key into the key (only the new signing key on it can open it)");
  await session.importEnvelopedKey(keyId, new Uint8Array(Buffer.from(half.envelope.value, "base64")));
  maybeCrash(opts.fault, "after-enc-key");
  report(opts.prompter, "install", "正在把加密证书写入 UKey", "Writing the encryption certificate to the key");
  const installed = await session.installCertificate(derOfPem(enc.pem), keyId, opts.label);
  maybeCrash(opts.fault, "after-enc-cert");
  return installed;
}
