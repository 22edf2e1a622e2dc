import { verify as cryptoVerify, constants, type KeyObject } from "node:crypto";
import { UkeyError, isUkeyError } from "@ukey/policy";
import { algorithmName, keyAlgorithmOfSpki, Oid } from "./algorithms.js";
import { children, contents, oidToString, readNode, readWhole, Tag, type DerNode } from "./der.js";
import { nameToString } from "./names.js";
import { pemToDer } from "./pem.js";
import { publicKeyFromSpki } from "./public-key.js";
import { SM2_DEFAULT_ID, sm2PointOfSpki, sm2Verify } from "./sm2.js";
import type { VerifiedCsr } from "./types.js";

/** Options of verifyCsr. */
export interface VerifyCsrOptions {
  /** Largest accepted input in bytes, PEM or DER. Default 65536. */
  maxBytes?: number;
}

const csrLabels = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"] as const;

// Signature algorithms accepted on a CSR. SHA-1 stays because many UKeys in
// the field can sign nothing else; a CSR only proves possession of its key,
// and a collision on it gains an attacker nothing.
const pkcs1Hashes: Record<string, string> = {
  [Oid.sha1WithRsa]: "sha1",
  [Oid.sha256WithRsa]: "sha256",
  [Oid.sha384WithRsa]: "sha384",
  [Oid.sha512WithRsa]: "sha512",
};
const ecdsaHashes: Record<string, string> = {
  [Oid.ecdsaSha256]: "sha256",
  [Oid.ecdsaSha384]: "sha384",
  [Oid.ecdsaSha512]: "sha512",
};
const digestOids: Record<string, string> = {
  [Oid.sha1]: "sha1", [Oid.sha256]: "sha256", [Oid.sha384]: "sha384", [Oid.sha512]: "sha512",
};

function malformed(reason: string, cause?: unknown): UkeyError {
  return new UkeyError("CSR_MALFORMED", { params: { reason }, cause });
}

/**
 * Parses a PKCS#10 request (PEM or DER) and verifies that it is signed by
 * its own key. Only the public key of the result is ever used for issuance.
 * Accepts EC P-256/P-384 (ECDSA with SHA-256/384/512), RSA 2048/3072/4096
 * (PKCS#1 v1.5 or PSS) and SM2 (SM3withSM2, verified with the standard
 * distinguishing ID 1234567812345678 of GM/T 0009, never Node's crypto).
 * Throws REQUEST_TOO_LARGE, CSR_MALFORMED, KEY_TOO_WEAK,
 * KEY_ALGORITHM_UNSUPPORTED and CSR_SIGNATURE_INVALID; for SM2,
 * CSR_SM2_ID_EMPTY when the signature holds with the empty ID (what Node and
 * OpenSSL without distid make) and CSR_SM2_SIGNATURE_INVALID otherwise.
 */
export function verifyCsr(input: Buffer | string, opts: VerifyCsrOptions = {}): VerifiedCsr {
  const limit = opts.maxBytes ?? 65536;
  const size = typeof input === "string" ? Buffer.byteLength(input) : input.length;
  if (size > limit) throw new UkeyError("REQUEST_TOO_LARGE", { params: { limit } });

  let der: Buffer;
  try {
    if (typeof input === "string") der = pemToDer(input, csrLabels);
    else if (input.subarray(0, 11).toString("latin1") === "-----BEGIN ") der = pemToDer(input.toString("latin1"), csrLabels);
    else der = input;
    readWhole(der);
  } catch (e) {
    if (isUkeyError(e, "PEM_MALFORMED", "DER_MALFORMED")) throw malformed(e.params.reason as string ?? e.message, e);
    throw e;
  }

  // Walked with the DER toolkit rather than an object parser: this runs once per issued certificate.
  let info: Buffer, subjectDer: Buffer, sigOid: string, sigParams: Buffer | undefined, signature: Buffer;
  try {
    const top = readWhole(der);
    const parts = children(der, top);
    const [infoN, algN, sigN] = parts;
    if (top.tag !== Tag.sequence || parts.length !== 3 || !infoN || !algN || !sigN
      || infoN.tag !== Tag.sequence || algN.tag !== Tag.sequence || sigN.tag !== Tag.bitString) {
      throw malformed("not a PKCS#10 certification request");
    }
    info = der.subarray(infoN.start, infoN.end);
    const fields = children(der, infoN);
    const [versionN, subjectN, spkiN, attrsN] = fields;
    if (!versionN || !subjectN || !spkiN || versionN.tag !== Tag.integer || subjectN.tag !== Tag.sequence || spkiN.tag !== Tag.sequence
      || (attrsN !== undefined && attrsN.tag !== 0xa0) || fields.length > 4) {
      throw malformed("certificationRequestInfo");
    }
    const version = contents(der, versionN);
    if (version.length !== 1 || version[0] !== 0) throw malformed(`version ${version.toString("hex")}`);
    subjectDer = der.subarray(subjectN.start, subjectN.end);
    const [oidN, paramsN, ...extra] = children(der, algN);
    if (!oidN || oidN.tag !== Tag.oid || extra.length) throw malformed("signature algorithm");
    sigOid = oidToString(contents(der, oidN));
    sigParams = paramsN && paramsN.tag !== Tag.null ? der.subarray(paramsN.start, paramsN.end) : undefined;
    const bits = contents(der, sigN);
    if (bits.length < 2 || bits[0] !== 0) throw malformed("signature bits");
    signature = bits.subarray(1);
  } catch (e) {
    if (isUkeyError(e, "CSR_MALFORMED")) throw e;
    throw malformed("not a PKCS#10 certification request", e);
  }
  const spki = rawSpki(info);

  let algorithm: VerifiedCsr["algorithm"];
  try {
    algorithm = keyAlgorithmOfSpki(spki);
  } catch (e) {
    if (isUkeyError(e, "DER_MALFORMED")) throw malformed("public key", e);
    throw e;
  }
  if (algorithm === "sm2") {
    let point: Buffer;
    try {
      point = sm2PointOfSpki(spki);
    } catch (e) {
      throw malformed("the public key is not a valid point", e);
    }
    if (sigOid !== Oid.sm3WithSm2) {
      throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: `signature ${algorithmName(sigOid)} with sm2 key` } });
    }
    if (!sm2Verify(info, signature, point, SM2_DEFAULT_ID)) {
      // The only other ID one can name is the empty one; any other is indistinguishable from damage.
      throw new UkeyError(sm2Verify(info, signature, point, "") ? "CSR_SM2_ID_EMPTY" : "CSR_SM2_SIGNATURE_INVALID");
    }
    return withRequestedSubject({ spki, algorithm, der, requestedSubjectDer: subjectDer });
  }
  let key: KeyObject;
  try {
    key = publicKeyFromSpki(spki, algorithm);
  } catch (e) {
    throw malformed("the public key is not a valid point or modulus", e);
  }

  const isEc = algorithm === "p256" || algorithm === "p384";
  let ok = false;
  try {
    if (isEc && ecdsaHashes[sigOid]) {
      ok = cryptoVerify(ecdsaHashes[sigOid], info, { key, dsaEncoding: "der" }, signature);
    } else if (!isEc && pkcs1Hashes[sigOid]) {
      ok = cryptoVerify(pkcs1Hashes[sigOid], info, key, signature);
    } else if (!isEc && sigOid === Oid.rsassaPss) {
      const p = pssParams(sigParams);
      ok = cryptoVerify(p.hash, info, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: p.saltLength }, signature);
    } else {
      throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: `signature ${algorithmName(sigOid)} with ${algorithm} key` } });
    }
  } catch (e) {
    if (isUkeyError(e)) throw e;
    ok = false;
  }
  if (!ok) throw new UkeyError("CSR_SIGNATURE_INVALID");

  return withRequestedSubject({ spki, algorithm, der, requestedSubjectDer: subjectDer });
}

/**
 * A VerifiedCsr from its parts, the requested subject rendered on first
 * read (most callers never look at it). For a CSR verified elsewhere, e.g.
 * in a worker thread. Never throws.
 */
export function withRequestedSubject(parts: Omit<VerifiedCsr, "requestedSubject">): VerifiedCsr {
  let rendered: string | undefined;
  return {
    ...parts,
    get requestedSubject() {
      if (rendered === undefined) {
        try {
          rendered = parts.requestedSubjectDer.length <= 2 ? "" : nameToString(parts.requestedSubjectDer);
        } catch {
          // Informational only: a subject we cannot render is not a reason to refuse.
          rendered = "";
        }
      }
      return rendered;
    },
  };
}

/** The exact SPKI bytes from certificationRequestInfo (version, subject, spki, ...). */
function rawSpki(info: Buffer): Buffer {
  try {
    const kids = children(info, readWhole(info));
    const spki = kids[2];
    if (!spki || spki.tag !== Tag.sequence) throw malformed("no subjectPKInfo");
    return info.subarray(spki.start, spki.end);
  } catch (e) {
    if (isUkeyError(e, "CSR_MALFORMED")) throw e;
    throw malformed("certificationRequestInfo", e);
  }
}

/** RSASSA-PSS-params; MGF1 must use the same hash, as every sane signer does. */
function pssParams(params: Buffer | undefined): { hash: string; saltLength: number } {
  let hash = "sha1";
  let mgfHash = "sha1";
  let saltLength = 20;
  if (params) {
    const b = Buffer.from(params);
    const top = readWhole(b);
    for (const f of children(b, top)) {
      const inner = readNode(b, f.contentStart, f.end);
      if (f.tag === 0xa0) hash = digestOf(b, inner);
      else if (f.tag === 0xa1) {
        const [mgfOid, mgfParams] = children(b, inner);
        if (!mgfOid || oidToString(contents(b, mgfOid)) !== Oid.mgf1 || !mgfParams) throw malformed("PSS mask generation");
        mgfHash = digestOf(b, mgfParams);
      } else if (f.tag === 0xa2) {
        if (inner.tag !== Tag.integer || inner.end - inner.contentStart > 2) throw malformed("PSS salt length");
        saltLength = contents(b, inner).readUIntBE(0, inner.end - inner.contentStart);
      } else if (f.tag !== 0xa3) throw malformed("PSS parameters");
    }
  }
  if (hash !== mgfHash) throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: `RSA-PSS with ${hash} and MGF1-${mgfHash}` } });
  return { hash, saltLength };
}

function digestOf(b: Buffer, algId: DerNode): string {
  if (algId.tag !== Tag.sequence) throw malformed("PSS hash");
  const o = children(b, algId)[0];
  const name = o && o.tag === Tag.oid ? digestOids[oidToString(contents(b, o))] : undefined;
  if (!name) throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: "RSA-PSS hash" } });
  return name;
}
