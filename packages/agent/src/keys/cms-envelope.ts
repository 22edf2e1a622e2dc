import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { UkeyError } from "@ukey/policy";

/** The envelope format of RSA pairs this agent imports: CMS EnvelopedData version 2 of docs/envelopes.md. */
export const rsaEnvelopeFormat = "cms-enveloped-data-v2";

const ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3";
const ID_DATA = "1.2.840.113549.1.7.1";
const ID_RSAES_OAEP = "1.2.840.113549.1.1.7";
const ID_AES256_WRAP_PAD = "2.16.840.1.101.3.4.1.48";

/** What a PKCS#11 token needs from an RSA pair's envelope: the two C_UnwrapKey inputs and whom it is for. */
export interface RsaKeyEnvelope {
  /** The recipient's subjectKeyIdentifier: SHA-1 of the signing key's subjectPublicKey bits (RFC 5280 method 1). */
  recipientKeyId: Buffer;
  /** RSAES-OAEP (SHA-1, MGF1-SHA-1, empty label) of the 32-octet AES key: CKM_RSA_PKCS_OAEP with the signing key. */
  encryptedKey: Buffer;
  /** AES-256 key wrap with padding (RFC 5649) of the PKCS#8: CKM_AES_KEY_WRAP_PAD with that AES key. */
  wrappedPrivateKey: Buffer;
}

const malformed = (reason: string, cause?: unknown): UkeyError =>
  new UkeyError("ENVELOPE_MALFORMED", { params: { reason }, ...(cause ? { cause } : {}) });

/**
 * Reads a "cms-enveloped-data-v2" envelope (DER ContentInfo) and checks that
 * it is exactly the form the server makes: one KeyTransRecipientInfo naming
 * its key by subjectKeyIdentifier, RSAES-OAEP with the default parameters,
 * id-data wrapped with id-aes256-wrap-pad. Nothing is decrypted here: the
 * token does that.
 * @throws UkeyError ENVELOPE_MALFORMED (not DER, another structure, another algorithm).
 */
export function parseRsaKeyEnvelope(der: Uint8Array): RsaKeyEnvelope {
  let enveloped: pkijs.EnvelopedData;
  try {
    const info = pkijs.ContentInfo.fromBER(der);
    if (info.contentType !== ID_ENVELOPED_DATA) throw malformed(`a CMS ${info.contentType}, not EnvelopedData`);
    enveloped = new pkijs.EnvelopedData({ schema: info.content });
  } catch (e) {
    if (e instanceof UkeyError) throw e;
    throw malformed("not a CMS EnvelopedData", e);
  }
  if (enveloped.recipientInfos.length !== 1 || enveloped.recipientInfos[0]!.variant !== 1) throw malformed("not one key transport recipient");
  const ktri = enveloped.recipientInfos[0]!.value as pkijs.KeyTransRecipientInfo;
  if (!(ktri.rid instanceof asn1js.OctetString)) throw malformed("the recipient is not named by its key identifier");
  const alg = ktri.keyEncryptionAlgorithm;
  if (alg.algorithmId !== ID_RSAES_OAEP || !defaultOaepParams(alg.algorithmParams)) throw malformed(`key transport ${alg.algorithmId}, not RSAES-OAEP with SHA-1`);
  const content = enveloped.encryptedContentInfo;
  if (content.contentType !== ID_DATA) throw malformed(`content ${content.contentType}, not id-data`);
  if (content.contentEncryptionAlgorithm.algorithmId !== ID_AES256_WRAP_PAD || content.contentEncryptionAlgorithm.algorithmParams !== undefined) {
    throw malformed(`content encryption ${content.contentEncryptionAlgorithm.algorithmId}, not AES-256 key wrap with padding`);
  }
  if (!content.encryptedContent) throw malformed("no encrypted content");
  const wrappedPrivateKey = Buffer.from(content.getEncryptedContent());
  // RFC 5649: at least two 64-bit blocks, whole blocks only.
  if (wrappedPrivateKey.length < 16 || wrappedPrivateKey.length % 8 !== 0) throw malformed(`${wrappedPrivateKey.length} octets of wrapped key`);
  return {
    recipientKeyId: Buffer.from(ktri.rid.valueBlock.valueHexView),
    encryptedKey: Buffer.from(ktri.encryptedKey.valueBlock.valueHexView),
    wrappedPrivateKey,
  };
}

/** RSAES-OAEP-params with every field at its default (SHA-1, MGF1-SHA-1, empty label): an empty SEQUENCE (what DER makes of it), or absent. */
function defaultOaepParams(params: unknown): boolean {
  if (params === undefined) return true;
  return params instanceof asn1js.Sequence && params.valueBlock.value.length === 0;
}
