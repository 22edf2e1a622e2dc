import type { KeyAlgorithm, KeyVendorTable, Pkcs11Sm2Mechanisms } from "@ukey/policy";

/**
 * The agent's one view of a key, whatever holds it: a USB key through its
 * vendor's PKCS#11 module (SoftHSM2 in tests), a PKCS#12 file (seed 003's
 * file certificates), or the embedded file token of the demo. The portal,
 * the CLI and the renewal flow use only this interface.
 *
 * Every method throws UkeyError with a catalogue code (TOKEN_*, PFX_*,
  * HSM_MODULE_LOAD_FAILED ...), never a raw PKCS#11 or OpenSSL
 * error. No method returns a private key or takes a PIN it keeps.
 */
export interface KeyStoreBackend {
  /** "pkcs11" for a module, "pkcs12" for a file, "skf" for a GM/T 0016 library. */
  readonly kind: KeyStoreKind;
  /** Where it reads from: the module path, or the file path. */
  readonly location: string;
  /**
   * The key vendor table this store was opened with (openBackend's
   * `keyVendors`: the institution's when the agent read it from its
   * server). Every flow that names a key's vendor, its SM2 values or its
   * advice reads this one table. Absent: the built-in table.
   */
  readonly keyVendors?: KeyVendorTable;
  /** The tokens present now (none is not an error). */
  listTokens(): Promise<TokenInfo[]>;
  /**
   * Logs in with the user PIN and returns a session. Serialised per token:
   * a second open() on the same token waits until the first closes.
   * Throws TOKEN_PIN_INCORRECT (with tries left when the module tells), TOKEN_PIN_LOCKED,
   * TOKEN_NOT_PRESENT; PFX_PASSWORD_INCORRECT for a file.
   */
  open(tokenSerial: string, pin: string): Promise<TokenSession>;
  /**
   * Reads certificates without the PIN (public objects only). A PKCS#12
   * file cannot be read without its password, so it returns [] unless
   * `pin` is given.
   */
  listCertificates(tokenSerial: string, pin?: string): Promise<TokenCertificate[]>;
  /**
   * True when listCertificates without a PIN cannot see the token's
   * certificates (a PKCS#12 file this process has not opened yet): the
   * portal then asks the PIN in the agent's own window first. Absent: never.
   */
  certificatesNeedPin?(tokenSerial: string): boolean;
  /**
   * Wipes the token with the SO PIN and sets a new label and user PIN (at
   * least 6 letters or digits, else PIN_TOO_WEAK, a new catalogue code). For a file: a new empty file
   * protected by the new PIN (the SO PIN is not asked). Returns the token
   * as it is afterwards: SoftHSM2 moves a re-initialised token to a new
   * slot, so callers find it again by serial.
   */
  initToken(tokenSerial: string, soPin: string, newUserPin: string, label?: string): Promise<TokenInfo>;
  /** Releases the module (C_Finalize) or file handles. */
  close(): Promise<void>;
}

/** What holds the keys: a PKCS#11 module, a PKCS#12 file, or a vendor's SKF (GM/T 0016) library. */
export type KeyStoreKind = "pkcs11" | "pkcs12" | "skf";

export interface TokenInfo {
  /** The token's serial number as the module reports it, trimmed. For a file: a stable id of the file (hex of a hash of its path). */
  serial: string;
  label: string;
  manufacturer: string;
  model: string;
  backend: KeyStoreKind;
  /** Free space in bytes where the module tells it (CK_UNAVAILABLE_INFORMATION: undefined). */
  freePublicMemory?: number;
  freePrivateMemory?: number;
  pin: {
    initialized: boolean;
    /** CKF_USER_PIN_LOCKED */
    locked: boolean;
    /** CKF_USER_PIN_COUNT_LOW */
    countLow: boolean;
    /** CKF_USER_PIN_FINAL_TRY */
    finalTry: boolean;
    /** CKF_USER_PIN_TO_BE_CHANGED; SKF: the PIN is still the default one. */
    toBeChanged: boolean;
    /**
     * The PIN is typed on the key's own PIN pad, never on the computer
     * (PKCS#11 CKF_PROTECTED_AUTHENTICATION_PATH): open() then takes "" and
     * the module waits for the pad.
     */
    keyPad?: boolean;
    /** Tries left before the PIN locks, where the key tells the number (SKF_GetPINInfo); PKCS#11 tells only countLow and finalTry. */
    triesLeft?: number;
    minLength?: number;
    maxLength?: number;
  };
}

export interface TokenCertificate {
  /** CKA_ID in lower-case hex (the key beside it has the same id). For a file: the key's local key id. */
  id: string;
  label: string;
  der: Uint8Array;
  /** Serial number as the server writes it: minimal even-length lower-case hex of the integer ("0a1b", never "a1b" or "000a1b"). */
  serialHex: string;
  subject: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  /** A private key with the same id is on the token and its public key matches the certificate's. */
  hasKey: boolean;
}

export interface TokenKey {
  /** CKA_ID in lower-case hex. */
  id: string;
  label: string;
  algorithm: KeyAlgorithm;
  /** DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
}

/** A logged-in session on one token. Close it; operations on one token never overlap. */
export interface TokenSession {
  readonly token: TokenInfo;
  /**
   * Called when an operation waits on the key's own button: an SKF
   * signature, key generation or envelope import still running after
   * deviceConfirmationDelayMs (a key without a button answers sooner).
   * Absent where the backend cannot tell.
   */
  onDeviceConfirmation?: (() => void) | undefined;
  /**
   * PKCS#11 only: the vendor-defined SM2 values of this token (`pkcs11Sm2`
   * of its key vendor table entry), with which SM2 keys are made and used.
   * Starts from the backend's table; login sets it from the institution's
   * table. Absent on other backends.
   */
  pkcs11Sm2?: Pkcs11Sm2Mechanisms | undefined;
  listCertificates(): Promise<TokenCertificate[]>;
  listKeys(): Promise<TokenKey[]>;
  /**
   * Generates a key pair on the token: private key CKA_SENSITIVE, not
   * CKA_EXTRACTABLE, CKA_TOKEN; CKA_ID `id` (random 20 bytes when not given)
   * and CKA_LABEL `label` on both halves. `opts.unwrap`: the private key
   * may also unwrap (CKA_UNWRAP), for a pair profile's RSA signing key,
   * which opens the encryption key's envelope on the token (docs/security.md);
   * the key store takes the permission back once the envelope is imported.
   * Ignored where no such attribute exists (SKF, a file).
   */
  generateKeyPair(algorithm: KeyAlgorithm, label: string, id?: string, opts?: { unwrap?: boolean }): Promise<TokenKey>;
  /**
   * Signs `data` with the private key of id `keyId`: ECDSA (DER-encoded
   * signature, SHA-256, SHA-384 for P-384) or RSA PKCS#1 v1.5 with SHA-256.
   */
  sign(keyId: string, data: Uint8Array): Promise<Uint8Array>;
  /** A PKCS#10 request for the key, subject as given ("" for an empty subject), signed on the token. PEM. */
  createCsr(keyId: string, subject?: string): Promise<string>;
  /**
   * Stores the certificate beside its key (same CKA_ID; label given), then
   * reads it back and checks that it is there and that its public key is
   * the key's: CERT_KEY_MISMATCH otherwise, and nothing is left behind.
   * Idempotent: the same certificate twice is stored once.
   */
  installCertificate(der: Uint8Array, keyId: string, label: string): Promise<TokenCertificate>;
  /** Sets a label on the key pair and certificate of `id` (used to mark pending and current objects). */
  relabel(id: string, label: string): Promise<void>;
  /** Deletes the certificate, public and private key of each id. Missing objects are not an error. */
  deleteObjects(ids: string[]): Promise<void>;
  /** Changes the user PIN (C_SetPIN; for a file: re-encrypts it). PIN_TOO_WEAK, TOKEN_PIN_INCORRECT. */
  changePin(oldPin: string, newPin: string): Promise<void>;
  /**
   * Imports an SM2 encryption key pair delivered as a GM/T 0016
   * ENVELOPEDKEYBLOB into the container of signing key `keyId`, whose
   * private key opens it, and returns the imported public key. SKF only
   * (absent elsewhere). ENVELOPE_MALFORMED, TOKEN_KEY_NOT_FOUND, CERT_KEY_MISMATCH
   * when the key the token then holds is not the envelope's.
   */
  importEnvelopedKey?(keyId: string, envelopedKeyBlob: Uint8Array): Promise<TokenKey>;
  /**
   * Imports an RSA encryption private key delivered as a CMS EnvelopedData
   * ("cms-enveloped-data-v2", docs/envelopes.md) beside signing key `keyId`,
   * unwrapped on the token (C_UnwrapKey: RSAES-OAEP with the signing key, then
   * AES key wrap with padding), so that the agent never holds it in clear.
   * `expectedSpki` is the encryption certificate's public key: a key already
   * there that matches it (an earlier run) is returned as it is. PKCS#11 only.
   * ENVELOPE_MALFORMED (damaged, or not for this signing key), TOKEN_CONTAINER_FOREIGN
   * (another key in the encryption key's place), CERT_KEY_MISMATCH, TOKEN_OPERATION_FAILED
   * (a driver that cannot unwrap), TOKEN_*.
   */
  importRsaEnvelope?(keyId: string, envelope: Uint8Array, expectedSpki: Uint8Array): Promise<TokenKey>;
  close(): Promise<void>;
}

/** Labels the agent writes, so a later run knows what each object is for. */
export const objectLabels = {
  /** A key generated for an order whose certificate is not installed yet. */
  pending: (orderId: string) => `ukey-renew pending ${orderId}`,
  /** The current certificate and key pair. */
  current: (serialHex: string) => `ukey-renew ${serialHex}`,
  /** Parses a pending label; undefined for any other label. */
  pendingOrder(label: string): string | undefined {
    return /^ukey-renew pending (\S+)$/.exec(label)?.[1];
  },
} as const;
