import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import {
  CMSVersion, ContentInfo, EncryptedContent, EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier,
  RecipientInfo, RecipientInfos, id_data, id_envelopedData,
} from "@peculiar/asn1-cms";
import { RsaEsOaepParams, id_RSAES_OAEP } from "@peculiar/asn1-rsa";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, SubjectKeyIdentifier } from "@peculiar/asn1-x509";
import { UkeyError } from "@ukey/policy";
import { keyAlgorithmOfSpki } from "./algorithms.js";
import { keyIdentifier } from "./extensions.js";

/** id-aes256-CBC (NIST CSOR, RFC 3565): the content encryption of version 1, no longer made. */
export const ID_AES256_CBC = "2.16.840.1.101.3.4.1.42";

/** id-aes256-wrap-pad (NIST CSOR, RFC 5649): the content encryption of version 2, CKM_AES_KEY_WRAP_PAD on a PKCS#11 token. */
export const ID_AES256_WRAP_PAD = "2.16.840.1.101.3.4.1.48";

/** The alternative initial value of AES key wrap with padding (RFC 5649 section 3), the 4 octets before the length. */
const KWP_AIV = Buffer.from("a65959a6", "hex");

/**
 * An RSA pair's encryption private key (PKCS#8 DER) as a CMS EnvelopedData
 * (RFC 5652) for the holder's RSA signing key, DER ContentInfo, envelope
 * format "cms-enveloped-data-v2" (docs/envelopes.md):
 * - one KeyTransRecipientInfo (version 2), its recipient the signing
 *   certificate's subjectKeyIdentifier (RFC 5280 method 1 over
 *   `recipientSpki`, which is what our certificates carry: the certificate
 *   need not exist yet), the 32-octet content-encryption key encrypted with
 *   RSAES-OAEP, default parameters (SHA-1, MGF1-SHA-1, empty label; RFC 4055);
 * - content type id-data, the PKCS#8 wrapped with AES-256 key wrap with
 *   padding (RFC 5649, id-aes256-wrap-pad, no parameters).
 * Both steps are C_UnwrapKey mechanisms a PKCS#11 token has (CKM_RSA_PKCS_OAEP,
 * then CKM_AES_KEY_WRAP_PAD), so the key opens on the token and is never in
 * the agent's memory in clear. The content-encryption key is zeroed here.
 * @throws UkeyError KEY_ALGORITHM_UNSUPPORTED (the recipient key is not RSA), DER_MALFORMED (not an SPKI).
 */
export function buildCmsEnvelopedKey(pkcs8: Buffer, recipientSpki: Buffer): Buffer {
  if (!keyAlgorithmOfSpki(recipientSpki).startsWith("rsa")) {
    throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: "a CMS key envelope for a signing key that is not RSA" } });
  }
  const recipient = createPublicKey({ key: recipientSpki, format: "der", type: "spki" });
  const cek = randomBytes(32);
  try {
    const wrap = createCipheriv("id-aes256-wrap-pad", cek, KWP_AIV);
    const encrypted = Buffer.concat([wrap.update(pkcs8), wrap.final()]);
    const encryptedKey = publicEncrypt({ key: recipient, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, cek);
    // Every field at its default: SHA-1, MGF1 with SHA-1, an empty label; DER encodes them as an empty SEQUENCE.
    const oaep = new RsaEsOaepParams();
    const ktri = new KeyTransRecipientInfo({
      version: CMSVersion.v2,
      rid: new RecipientIdentifier({ subjectKeyIdentifier: new SubjectKeyIdentifier(keyIdentifier(recipientSpki)) }),
      keyEncryptionAlgorithm: new AlgorithmIdentifier({ algorithm: id_RSAES_OAEP, parameters: AsnConvert.serialize(oaep) }),
      encryptedKey: new OctetString(encryptedKey),
    });
    const enveloped = new EnvelopedData({
      version: CMSVersion.v2,
      recipientInfos: new RecipientInfos([new RecipientInfo({ ktri })]),
      encryptedContentInfo: new EncryptedContentInfo({
        contentType: id_data,
        contentEncryptionAlgorithm: new AlgorithmIdentifier({ algorithm: ID_AES256_WRAP_PAD }),
        encryptedContent: new EncryptedContent({ value: new OctetString(encrypted) }),
      }),
    });
    return Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType: id_envelopedData, content: AsnConvert.serialize(enveloped) })));
  } finally {
    cek.fill(0);
  }
}
