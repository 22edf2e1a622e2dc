import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import {
  CMSVersion, ContentInfo, EncryptedContent, EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier,
  RecipientInfo, RecipientInfos, id_data, id_envelopedData,
} from "@peculiar/asn1-cms";
import { RsaEsOaepParams, id_RSAES_OAEP, id_mgf1, sha256 } from "@peculiar/asn1-rsa";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, SubjectKeyIdentifier } from "@peculiar/asn1-x509";
import { UkeyError } from "@ukey/policy";
import { keyAlgorithmOfSpki } from "./algorithms.js";
import { keyIdentifier } from "./extensions.js";

/** id-aes256-CBC (NIST CSOR, RFC 3565). */
export const ID_AES256_CBC = "2.16.840.1.101.3.4.1.42";

/**
 * An RSA pair's encryption private key (PKCS#8 DER) as a CMS EnvelopedData
 * (RFC 5652) for the holder's RSA signing key, DER ContentInfo:
 * - one KeyTransRecipientInfo (version 2), its recipient the signing
 *   certificate's subjectKeyIdentifier (RFC 5280 method 1 over
 *   `recipientSpki`, which is what our certificates carry: the certificate
 *   need not exist yet), the content-encryption key encrypted with
 *   RSAES-OAEP, SHA-256 and MGF1-SHA-256 (RFC 4055 / RFC 8017);
 * - content type id-data, AES-256-CBC (RFC 3565) with a random IV, PKCS#7 padding.
 * `openssl cms -decrypt -inform DER -recip signing.cer -inkey signing.key`
 * opens it (docs/envelopes.md). The content-encryption key is zeroed here.
 * @throws UkeyError KEY_ALGORITHM_UNSUPPORTED (the recipient key is not RSA), DER_MALFORMED (not an SPKI).
 */
export function buildCmsEnvelopedKey(pkcs8: Buffer, recipientSpki: Buffer): Buffer {
  if (!keyAlgorithmOfSpki(recipientSpki).startsWith("rsa")) {
    throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: "a CMS key envelope for a signing key that is not RSA" } });
  }
  const recipient = createPublicKey({ key: recipientSpki, format: "der", type: "spki" });
  const cek = randomBytes(32);
  const iv = randomBytes(16);
  try {
    const cipher = createCipheriv("aes-256-cbc", cek, iv);
    const encrypted = Buffer.concat([cipher.update(pkcs8), cipher.final()]);
    const encryptedKey = publicEncrypt({ key: recipient, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
    const oaep = new RsaEsOaepParams({
      hashAlgorithm: sha256,
      maskGenAlgorithm: new AlgorithmIdentifier({ algorithm: id_mgf1, parameters: AsnConvert.serialize(sha256) }),
    });
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
        contentEncryptionAlgorithm: new AlgorithmIdentifier({ algorithm: ID_AES256_CBC, parameters: AsnConvert.serialize(new OctetString(iv)) }),
        encryptedContent: new EncryptedContent({ value: new OctetString(encrypted) }),
      }),
    });
    return Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType: id_envelopedData, content: AsnConvert.serialize(enveloped) })));
  } finally {
    cek.fill(0);
  }
}
