import { UkeyError } from "@ukey/policy";
import type { TokenCertificate, TokenSession } from "../keys/key-store.js";
import type { Prompter } from "../prompter.js";
import type { EncryptionHalf } from "../server-client.js";
import { readCertificate } from "../keys/certificate-fields.js";
import { rsaEnvelopeFormat } from "../keys/cms-envelope.js";
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
 * Puts a pair's encryption half beside signing key `keyId`, after its
 * signing certificate: the encryption key from its envelope (only the new
 * signing key on the token opens it), then the encryption certificate
 * beside it.
 * - SM2 ("gmt0016-enveloped-key-blob"): SKF_ImportECCKeyPair into the
 *   signing key's container, the certificate in the same container.
 * - RSA ("cms-enveloped-data-v2"): C_UnwrapKey on a PKCS#11 token into
 *   CKA_ID `keyId` ‖ 02, the certificate at the same id (docs/key-vendors.md).
 * Each step looks first whether an earlier run did it (the certificate
 * there, or the envelope's key there), so an interruption anywhere is
 * finished by running again.
 * @throws UkeyError ENVELOPE_MALFORMED, TOKEN_CONTAINER_FOREIGN (another
 *   encryption key in its place), CERT_KEY_MISMATCH, TOKEN_OPERATION_FAILED
 *   (a key store that cannot take an envelope of this format), TOKEN_*.
 */
export async function installEncryptionHalf(
  session: TokenSession, keyId: string, half: EncryptionHalf, opts: { prompter: Prompter; fault?: FaultPoint | undefined; label: string },
): Promise<TokenCertificate> {
  const enc = half.encryptionCertificate;
  const der = derOfPem(enc.pem);
  const there = (await session.listCertificates()).find((c) => sameSerial(c.serialHex, enc.serial) && c.hasKey && Buffer.from(c.der).equals(der));
  if (there) return there;
  const envelope = new Uint8Array(Buffer.from(half.envelope.value, "base64"));
  const sm2 = half.envelope.format === sm2EnvelopeFormat && session.importEnvelopedKey;
  const rsa = half.envelope.format === rsaEnvelopeFormat && session.importRsaEnvelope;
  if (!sm2 && !rsa) {
    throw new UkeyError("TOKEN_OPERATION_FAILED", {
      params: { reason: `this UKey cannot take an encryption key enveloped as ${half.envelope.format}` },
      detail: "SM2 pairs (gmt0016-enveloped-key-blob) are imported on SKF keys, RSA pairs (cms-enveloped-data-v2) on PKCS#11 keys",
    });
  }
  report(opts.prompter, "install", "正在把加密密钥导入 UKey（只有 UKey 中的新签名密钥能打开它）", "Importing the encryption key into the key (only the new signing key on it can open it)");
  const encryptionKeyId = sm2
    ? (await session.importEnvelopedKey!(keyId, envelope), keyId)
    : (await session.importRsaEnvelope!(keyId, envelope, readCertificate(der).spki)).id;
  maybeCrash(opts.fault, "after-enc-key");
  report(opts.prompter, "install", "正在把加密证书写入 UKey", "Writing the encryption certificate to the key");
  const installed = await session.installCertificate(der, encryptionKeyId, opts.label);
  maybeCrash(opts.fault, "after-enc-cert");
  return installed;
}
