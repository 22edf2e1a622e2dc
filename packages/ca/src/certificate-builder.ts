import type { CertificateProfile } from "@ukey/policy";
import { UkeyError, effectiveKeyUsage } from "@ukey/policy";
import { keyAlgorithmOfSpki } from "./algorithms.js";
import { bitString, explicit, seq, tlv, Tag, x509Time } from "./der.js";
import {
  authorityInfoAccess, authorityKeyIdentifier, basicConstraints, crlDistributionPoints, extKeyUsage, freshestCrl, keyIdentifier,
  keyUsage, subjectAltName, subjectKeyIdentifier,
} from "./extensions.js";
import { encodeName } from "./names.js";
import { crlShardOf } from "./crl-builder.js";
import { serialHex } from "./serial.js";
import type { CaSigner, CaUrls, IssuanceInput, IssuerCertificate } from "./types.js";

/** What a CertificateBuilder is made for. */
export interface CertificateBuilderOptions {
  issuer: IssuerCertificate;
  signer: CaSigner;
  profile: CertificateProfile;
  urls: CaUrls;
}

const version3 = explicit(0, tlv(Tag.integer, Buffer.from([2])));

function invalid(reason: string): UkeyError {
  return new UkeyError("REQUEST_INVALID", { params: { reason } });
}

/**
 * Builds end-entity certificates for one (issuer, signer, profile, URLs).
 * Everything that is the same for every certificate is encoded once, in the
 * constructor; buildTbs only encodes serial, validity, subject, key, SKI
 * and SAN and concatenates. Prepare-then-sign: the caller records the TBS
 * (and its serial) before calling sign, so a crash never leaves a signed
 * certificate the database does not know.
 *
 * Extensions, in this order: basicConstraints CA:FALSE (critical), keyUsage
 * (critical; the profile's bits that the key's algorithm and the EKU allow,
 * see effectiveKeyUsage), extKeyUsage (when the profile has any), subjectKeyIdentifier,
 * authorityKeyIdentifier, cRLDistributionPoints, authorityInfoAccess (OCSP,
 * caIssuers), subjectAltName (when there are SANs; critical when the
 * subject is empty).
 *
 * The constructor throws REQUEST_INVALID for a profile or URL that cannot be
 * encoded.
 */
export class CertificateBuilder {
  readonly issuer: IssuerCertificate;
  readonly signer: CaSigner;
  readonly profile: CertificateProfile;
  readonly urls: CaUrls;
  readonly #algorithmAndIssuer: Buffer;
  /** basicConstraints, keyUsage and extKeyUsage, per key algorithm: keyUsage follows the key's (effectiveKeyUsage). */
  readonly #extensionsBeforeSki = new Map<string, Buffer>();
  /** AKI, CRL distribution point and AIA; one per CRL shard (the shard of the serial is taken). */
  readonly #extensionsAfterSki: Buffer[];
  readonly #signatureAlgorithm: Buffer;

  constructor(opts: CertificateBuilderOptions) {
    this.issuer = opts.issuer;
    this.signer = opts.signer;
    this.profile = opts.profile;
    this.urls = opts.urls;
    this.#signatureAlgorithm = opts.signer.signatureAlgorithm;
    this.#algorithmAndIssuer = Buffer.concat([opts.signer.signatureAlgorithm, opts.issuer.subjectName]);
    for (const algorithm of opts.profile.keyAlgorithms) {
      this.#extensionsBeforeSki.set(algorithm, Buffer.concat([
        basicConstraints(false),
        keyUsage(effectiveKeyUsage(opts.profile, algorithm)),
        ...(opts.profile.extKeyUsage.length ? [extKeyUsage(opts.profile.extKeyUsage)] : []),
      ]));
    }
    const afterSki = (crl: string, delta: string | undefined) => Buffer.concat([
      authorityKeyIdentifier(opts.issuer.keyId),
      crlDistributionPoints(crl),
      ...(delta ? [freshestCrl(delta)] : []),
      authorityInfoAccess(opts.urls.ocsp, opts.urls.caIssuers),
    ]);
    const shards = opts.urls.crlShards;
    this.#extensionsAfterSki = shards && shards.count > 1
      ? Array.from({ length: shards.count }, (_, k) => afterSki(shards.url(k), shards.deltaUrl?.(k)))
      : [afterSki(opts.urls.crl, opts.urls.freshestCrl)];
  }

  /**
   * The DER TBSCertificate for `input`. Throws KEY_ALGORITHM_NOT_ALLOWED
   * when the profile does not accept the key, KEY_ALGORITHM_UNSUPPORTED /
   * KEY_TOO_WEAK / DER_MALFORMED for a bad SPKI, SERIAL_MALFORMED for a
   * serial that is not a positive integer of at most 20 octets, and
   * REQUEST_INVALID for dates, names or SANs that cannot be encoded, a
   * certificate with neither subject nor SAN, or another profile's input.
   */
  buildTbs(input: IssuanceInput): Buffer {
    if (input.profile.id !== this.profile.id) throw invalid(`builder is for profile ${this.profile.id}, not ${input.profile.id}`);
    const algorithm = keyAlgorithmOfSpki(input.spki);
    if (!this.profile.keyAlgorithms.includes(algorithm)) {
      throw new UkeyError("KEY_ALGORITHM_NOT_ALLOWED", {
        params: { profile: this.profile.id, algorithm, allowed: this.profile.keyAlgorithms.join(", ") },
      });
    }
    const serial = serialInteger(input.serial);
    if (!(input.notBefore < input.notAfter)) throw invalid("notBefore must be before notAfter");
    if (input.notBefore < this.issuer.notBefore || input.notAfter > this.issuer.notAfter) {
      throw invalid("the validity must lie within the issuing CA's validity");
    }
    const sans = input.subject.sans ?? [];
    if (input.subject.rdns.length === 0 && sans.length === 0) throw invalid("a certificate needs a subject or a subject alternative name");
    const subject = encodeName(input.subject.rdns);
    const after = this.#extensionsAfterSki.length === 1 ? this.#extensionsAfterSki[0]! : this.#extensionsAfterSki[crlShardOf(serialHex(input.serial), this.#extensionsAfterSki.length)]!;
    const extensions = [this.#extensionsBeforeSki.get(algorithm)!, subjectKeyIdentifier(keyIdentifier(input.spki)), after];
    if (sans.length) extensions.push(subjectAltName(sans, input.subject.rdns.length === 0));
    return seq(
      version3,
      serial,
      this.#algorithmAndIssuer,
      seq(x509Time(input.notBefore), x509Time(input.notAfter)),
      subject,
      input.spki,
      explicit(3, seq(...extensions)),
    );
  }

  /** Signs a TBS from buildTbs and returns the certificate DER. Throws what the signer throws (HSM_*). */
  async sign(tbs: Buffer): Promise<Buffer> {
    const signature = await this.signer.sign(tbs);
    return seq(tbs, this.#signatureAlgorithm, bitString(signature));
  }
}

/** DER INTEGER of a positive serial given as a magnitude or INTEGER contents. */
export function serialInteger(serial: Buffer): Buffer {
  const bad = () => new UkeyError("SERIAL_MALFORMED", { params: { serial: serial.toString("hex") } });
  if (serial.length === 0 || serial[0]! & 0x80) throw bad();
  let i = 0;
  while (i < serial.length - 1 && serial[i] === 0) i++;
  let m = serial.subarray(i);
  if (m.length === 1 && m[0] === 0) throw bad();
  if (m[0]! & 0x80) m = Buffer.concat([Buffer.from([0]), m]);
  if (m.length > 20) throw bad();
  return tlv(Tag.integer, m);
}
