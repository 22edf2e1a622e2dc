export * from "./types.js";
export { newSerial, serialHex, normaliseSerial, serialBytes } from "./serial.js";
export { pemToDer, derToPem, splitPemBundle, type PemBlock } from "./pem.js";
export { keyAlgorithmOfSpki, signatureAlgorithmFor } from "./algorithms.js";
export { certificateSpki, publicKeyFromSpki } from "./public-key.js";
export { verifyCsr, withRequestedSubject, type VerifyCsrOptions } from "./csr-verifier.js";
export { FileKeyStore, KEY_FILE_PBKDF2_ITERATIONS, type KeyFileProtection, type KeyFileUpgrade } from "./file-key-store.js";
export { Pkcs11KeyStore, ecdsaRawToDer, type Pkcs11KeyStoreOptions } from "./pkcs11-key-store.js";
export { encodeName, nameToString } from "./names.js";
export { keyIdentifier } from "./extensions.js";
export { CertificateBuilder, type CertificateBuilderOptions } from "./certificate-builder.js";
export { loadIssuerCertificate } from "./issuer-certificate.js";
export { createCaHierarchy, caKeyNames, type CaHierarchyOptions } from "./ca-hierarchy.js";
export { buildCrl, crlPemLabel, crlShardOf, crlShardRange, type CrlInput } from "./crl-builder.js";
export {
  parseOcspRequest, buildOcspResponse, canonicalCertId, ocspErrorResponse, matchesIssuer, maxOcspCertIds, maxOcspRequestBytes,
  type OcspSingleAnswer, type OcspResponseInput,
} from "./ocsp-responder.js";
export {
  SM2_DEFAULT_ID, Sm2Oid, sm2GenerateKeyPair, sm2PublicKeyOf, sm2Z, sm2Sign, sm2Signer, sm2Verify, sm2Spki, sm2PointOfSpki, sm2Pkcs8,
  sm2KeyFromPkcs8, sm3, type Sm2KeyPair,
} from "./sm2.js";
export {
  buildEnvelopedKeyBlob, parseEnvelopedKeyBlob, openEnvelopedKeyBlob, sm2CipherDer, SGD_SM4_ECB, ENVELOPED_KEY_BLOB_SIZE,
  sm2EnvelopedKeyFromBlob, parseSm2EnvelopedKey,
  type EnvelopedKeyBlob,
} from "./enveloped-key-blob.js";
export { buildCmsEnvelopedKey, ID_AES256_CBC, ID_AES256_WRAP_PAD } from "./cms-enveloped-key.js";
export { signedBy, buildCsr, holdsKeyOf } from "./signed-object.js";
