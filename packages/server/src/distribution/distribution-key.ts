import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import type { Ed25519Verify } from "@ukey/policy";
import type { DataDirLayout } from "../data-dir.js";
import { raKeyFiles, readOrCreateKeyFile } from "../admin/secret-key-file.js";

// PKCS#8 (RFC 8410) of an Ed25519 private key, up to its 32-byte seed.
const ed25519Pkcs8Prefix = Buffer.from("302e020100300506032b657004220420", "hex");

/** The institution's distribution key: signs agent-config.json and manifest.json of /downloads/. */
export interface DistributionKey {
  privateKey: KeyObject;
  /** SubjectPublicKeyInfo, DER: what installers carry as institution-key.pem. */
  spkiDer: Buffer;
  /** SHA-256 of spkiDer, lowercase hex. */
  keyId: string;
  sign(data: Uint8Array): Uint8Array;
}

/** SHA-256 of an SPKI (DER), lowercase hex: the keyId of signed documents. */
export function keyIdOf(spkiDer: Uint8Array): string {
  return createHash("sha256").update(spkiDer).digest("hex");
}

/** Ed25519 verification with node:crypto, for openSignedDocument. */
export const nodeEd25519Verify: Ed25519Verify = (data, signature, spkiDer) => {
  try {
    return verify(null, data, createPublicKey({ key: Buffer.from(spkiDer), format: "der", type: "spki" }), signature);
  } catch {
    return false;
  }
};

/**
 * The data directory's distribution key: an Ed25519 key whose 32-byte seed
 * is `secrets/distribution-signing.key` (mode 0600), made on first use. Every
 * instance of a cluster must share it (copy `secrets/`); a new key means the
 * installed agents refuse new configurations until holders reinstall.
 * @throws UkeyError FILE_UNREADABLE when the key file cannot be read or made.
 */
export function distributionKey(layout: Pick<DataDirLayout, "dir">): DistributionKey {
  const seed = readOrCreateKeyFile(raKeyFiles(layout).distributionSigning).subarray(0, 32);
  const privateKey = createPrivateKey({ key: Buffer.concat([ed25519Pkcs8Prefix, seed]), format: "der", type: "pkcs8" });
  const spkiDer = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return { privateKey, spkiDer, keyId: keyIdOf(spkiDer), sign: (data) => sign(null, data, privateKey) };
}
