import {
  buildOcspResponse, canonicalCertId, matchesIssuer, ocspErrorResponse, parseOcspRequest,
  type CaSigner, type IssuerCertificate, type OcspCertId, type OcspCertStatus, type OcspRequestInfo,
} from "@ukey/ca";
import { UkeyError, revocationReasonCode, type Clock } from "@ukey/policy";
import type { CertificateRepository, OcspState, StoredOcspResponse } from "@ukey/store";

/** The issuing CA as OCSP needs it: its certificate and its key, through the signer abstraction. */
export interface OcspCa {
  readonly issuing: IssuerCertificate;
  readonly issuingSigner: CaSigner;
}

/** How nonces in requests are treated (config `ca.ocspNonces`). */
export type OcspNonceMode = "ignore" | "echo";

/** Caching facts of an answer served from a pre-signed response, for the HTTP headers. */
export interface OcspCacheInfo {
  thisUpdate: number;
  nextUpdate: number;
  etag: string;
}

/** One OCSP answer: the DER to send, the catalogue error behind an error status, and caching facts when pre-signed. */
export interface OcspAnswer {
  der: Buffer;
  error?: UkeyError;
  cache?: OcspCacheInfo;
}

/** Counters of where answers came from, for the bench and the metrics. */
export interface OcspCounters {
  fromCache: number;
  signedLive: number;
  presigned: number;
  refreshed: number;
}

type OcspRepo = Pick<CertificateRepository, "ocspState" | "storeOcsp" | "claimOcspDue" | "rescheduleOcsp">;

/** A stored response is served only while it has at least this long before nextUpdate. */
const freshnessMarginMs = 60_000;
/** How long a claimed row stays with this instance's refresher before another may take it. */
const leaseMs = 5 * 60_000;
/** Certificates signed per page of the refresher; it yields to requests between pages. */
const refreshPage = 200;
/** Expired certificates and never-issued intents are not signed ahead: they wait this far out (about 285,000 years). */
const NEVER = 9e15;

/**
 * OCSP answers by the RFC 5019 profile, from responses signed ahead.
 *
 * What is signed ahead: one response per unexpired certificate of the
 * issuing CA, with the SHA-1 CertID RFC 5019 clients send, no nonce, valid
 * `validityHours`. It is signed when the certificate is issued (in the
 * issuance batch, see `presignGood`), again when it is revoked (right after
 * the revocation commits), and again by the background refresher once half
 * of its validity has passed. It is stored in the certificate's own row: a
 * revocation clears it in the same UPDATE, so a crash between the
 * revocation and the new signature leaves no response at all, never a
 * stale `good` one, and the refresher signs it on the next start.
 *
 * What is answered from the store: a request for one certificate, SHA-1
 * CertID, with no nonce, or with a nonce when `nonces` is "ignore" (RFC 5019
 * 2.2.1 lets a responder leave it out). Everything else — several CertIDs,
 * other hash algorithms, nonces echoed by configuration, expired or unknown
 * serials, and a certificate whose response is not stored yet — is signed
 * on the request path, from the database's state.
 *
 * The issuing CA signs, and every response carries its certificate: RFC
 * 6960 4.2.2.2 lets the CA sign its own responses, and GnuTLS (ocsptool,
 * and what uses it) finds the responder only among the response's
 * certificates. A delegated OCSP signing certificate would keep the CA key
 * off this path but adds a key and its rotation; the pre-signing already
 * takes the CA key off the request path for known certificates.
 *
 * Nothing is kept in memory: every answer reads the certificate's row, so
 * every instance on one PostgreSQL serves a revocation from the moment it
 * commits.
 */
export class OcspService {
  readonly counters: OcspCounters = { fromCache: 0, signedLive: 0, presigned: 0, refreshed: 0 };
  private readonly issuerKeyId: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: {
    certificates: OcspRepo;
    ca: OcspCa;
    clock: Clock;
    /** nextUpdate - thisUpdate of every response, in hours. */
    validityHours: number;
    nonces: OcspNonceMode;
    /** Seconds between passes of the background refresher (default 5). */
    refreshSeconds?: number;
    /** Called with an error of a refresher pass (default: ignored, the next pass retries). */
    onError?: (e: unknown) => void;
  }) {
    this.issuerKeyId = deps.ca.issuing.keyId.toString("hex");
  }

  private get validityMs(): number {
    return this.deps.validityHours * 3_600_000;
  }

  /** Signs one response about `serial` with `status`, as stored (canonical CertID, no nonce). Throws what the signer throws. */
  async sign(serial: string, status: OcspCertStatus, now: Date): Promise<StoredOcspResponse> {
    const thisUpdate = now.getTime();
    const nextUpdate = thisUpdate + this.validityMs;
    const der = await buildOcspResponse({
      issuer: this.deps.ca.issuing, signer: this.deps.ca.issuingSigner, producedAt: now, certs: [this.deps.ca.issuing.der],
      responses: [{ certId: canonicalCertId(this.deps.ca.issuing, serial), status, thisUpdate: now, nextUpdate: new Date(nextUpdate) }],
    });
    return { der, thisUpdate, nextUpdate, refreshAt: thisUpdate + Math.floor(this.validityMs / 2) };
  }

  /** The `good` response of a certificate about to be stored by the issuance batch. Throws what the signer throws. */
  async presignGood(serial: string, now: Date): Promise<StoredOcspResponse> {
    this.counters.presigned++;
    return this.sign(serial, { status: "good" }, now);
  }

  /**
   * Signs and stores the response of a certificate whose state just changed (revocation). A failure
   * leaves no stored response (the revocation cleared it): the request path signs from the database
   * and the refresher retries. Never throws.
   */
  async resign(serial: string): Promise<void> {
    try {
      const st = await this.deps.certificates.ocspState(serial, this.issuerKeyId);
      if (!st || !st.issued) return;
      const r = await this.sign(serial, ocspStatusOf(st), this.deps.clock.now());
      await this.deps.certificates.storeOcsp(serial, r, st.revokedAt);
    } catch (e) {
      this.deps.onError?.(e);
    }
  }

  /**
   * Answers an OCSP request (DER). Malformed requests get malformedRequest
   * and CertIDs of another issuer `unauthorized`, as RFC 6960 says; the
   * result is always an OCSPResponse. Throws only what the store throws.
   */
  async answer(requestDer: Buffer): Promise<OcspAnswer> {
    let req: OcspRequestInfo;
    try {
      req = parseOcspRequest(requestDer);
    } catch (e) {
      return { der: ocspErrorResponse("malformedRequest"), error: e instanceof UkeyError ? e : new UkeyError("OCSP_REQUEST_MALFORMED", { params: { reason: "not an OCSP request" } }) };
    }
    const issuer = this.deps.ca.issuing;
    for (const certId of req.certIds) {
      if (!matchesIssuer(certId, issuer)) return { der: ocspErrorResponse("unauthorized") };
    }
    const now = this.deps.clock.now();
    const nonce = this.deps.nonces === "echo" ? req.nonce : undefined;
    const single = req.certIds.length === 1 ? req.certIds[0]! : undefined;
    let first: OcspState | undefined;
    if (single) {
      first = await this.deps.certificates.ocspState(single.serial, this.issuerKeyId);
      const stored = first?.response;
      if (stored && single.hashAlgorithm === "sha1" && nonce === undefined && stored.nextUpdate - now.getTime() > freshnessMarginMs) {
        this.counters.fromCache++;
        return { der: stored.der, cache: { thisUpdate: stored.thisUpdate, nextUpdate: stored.nextUpdate, etag: `"${single.serial}.${stored.thisUpdate.toString(36)}"` } };
      }
    }
    this.counters.signedLive++;
    const responses = [];
    for (const certId of req.certIds) {
      const st = certId === single ? first : await this.deps.certificates.ocspState(certId.serial, this.issuerKeyId);
      responses.push(this.answerFor(certId, st, now));
    }
    const der = await buildOcspResponse({ issuer, signer: this.deps.ca.issuingSigner, responses, producedAt: now, nonce, certs: [issuer.der] });
    return { der };
  }

  private answerFor(certId: OcspCertId, st: OcspState | undefined, now: Date) {
    return { certId, status: ocspStatusOf(st), thisUpdate: now, nextUpdate: new Date(now.getTime() + this.validityMs) };
  }

  /**
   * One pass of the refresher: signs every due response (never signed, cleared by a revocation, or past
   * half its validity), a page at a time. Expired certificates and intents are set aside (answered on
   * the request path if anyone asks). Returns how many it signed. Throws what the store throws.
   */
  async refreshDue(maxPages = Number.POSITIVE_INFINITY): Promise<number> {
    let signed = 0;
    for (let page = 0; page < maxPages && !this.stopped; page++) {
      const now = this.deps.clock.now();
      const lease = now.getTime() + leaseMs;
      const due = await this.deps.certificates.claimOcspDue(this.issuerKeyId, now.getTime(), lease, refreshPage);
      for (const st of due) {
        if (!st.issued || st.status === "pending" || st.status === "abandoned" || st.notAfter <= now.getTime()) {
          await this.deps.certificates.rescheduleOcsp(st.serial, lease, NEVER);
          continue;
        }
        const r = await this.sign(st.serial, ocspStatusOf(st), now);
        // A revocation since the claim wins: the stored response would be refused, and its row is due again.
        if (await this.deps.certificates.storeOcsp(st.serial, r, st.revokedAt)) {
          signed++;
          this.counters.refreshed++;
        }
      }
      if (due.length < refreshPage) break;
      await new Promise((r) => setImmediate(r));
    }
    return signed;
  }

  /** Starts the background refresher (a pass now, then every refreshSeconds). Does not wait for the pass. */
  start(): void {
    if (this.timer || this.stopped) return;
    const tick = () => {
      if (this.running || this.stopped) return;
      this.running = this.refreshDue().then(() => undefined, (e) => this.deps.onError?.(e)).finally(() => { this.running = undefined; });
    };
    this.timer = setInterval(tick, (this.deps.refreshSeconds ?? 5) * 1000);
    this.timer.unref();
    tick();
  }

  /** Stops the refresher and waits for a pass under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}

/**
 * What OCSP says of a certificate: revoked once a revocation time is set
 * (including superseded-by-revocation), good while issued and not revoked
 * (expiry is the relying party's check), unknown for serials we never
 * completed (pending or abandoned intents) or never saw.
 */
export function ocspStatusOf(st: Pick<OcspState, "issued" | "status" | "revokedAt" | "revocationReason"> | undefined): OcspCertStatus {
  if (!st || !st.issued || st.status === "pending" || st.status === "abandoned") return { status: "unknown" };
  if (st.revokedAt !== null) {
    const reason = st.revocationReason ?? "unspecified";
    return revocationReasonCode(reason) !== undefined
      ? { status: "revoked", revokedAt: new Date(st.revokedAt), reason }
      : { status: "revoked", revokedAt: new Date(st.revokedAt) };
  }
  return { status: "good" };
}
