// @peculiar/x509 uses decorators whose metadata must be registered first.
import "reflect-metadata";
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, extname, join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  AuthorityKeyIdentifier, BasicConstraints, Certificate, type Name, SubjectAlternativeName, SubjectKeyIdentifier,
  id_ce_authorityKeyIdentifier, id_ce_basicConstraints, id_ce_subjectAltName, id_ce_subjectKeyIdentifier,
} from "@peculiar/asn1-x509";
import { X509Certificate } from "@peculiar/x509";
import { keyIdentifier, nameToString, serialHex } from "@ukey/ca";
import { UkeyError } from "@ukey/policy";
import type { CertificateProfile } from "@ukey/policy";
import type { CertificateRecord, CertificateStatus, HolderRecord, Store } from "@ukey/store";
import { hashIdNumber, maskIdNumber } from "./holder-identity.js";
import { readHoldersFile, type HolderRow } from "./holders-file.js";

/** What the import needs from the rest of the server. */
export interface ImportDeps {
  store: Pick<Store, "transaction" | "issuers" | "holders" | "certificates" | "profiles">;
  /** Key of the ID-number HMAC (see hashIdNumber); ID numbers are never stored. */
  idKey: Buffer;
  /** This server's own CA certificates (root and issuing), by hex subject key identifier. */
  ownIssuers: Array<{ keyId: string; der: Buffer }>;
}

/** What to import. */
export interface ImportInput {
  /** A PEM bundle file, or a directory of .pem/.cer/.crt/.der files (each DER or PEM). */
  certificates: string;
  /** Holders file: .csv (header row) or .json (array of objects); see parseHoldersText. */
  holders: string;
  /** PEM (or DER) files holding the foreign CA chain, root included. */
  chain?: string[];
  /** Profile of certificates whose holder row names none; default "personal". */
  defaultProfile?: string;
  /** Who runs the import, for the audit log ("cli", "operator:alice"). */
  actor: string;
  now: Date;
}

/** One certificate of the import and what became of it. */
export interface ImportReportRow {
  serial: string;
  issuerKeyId: string;
  holderId: string;
  /** The certificate's status in the store ("active", "expired", or the stored status when it already existed). */
  status: CertificateStatus;
  /** "imported" now, or "existing" when the same certificate was already stored. */
  outcome: "imported" | "existing";
}

/** Counts of what one import wrote. */
export interface ImportReport {
  /** Holders inserted (holders already stored with the same ID number are reused, not counted). */
  holders: number;
  /** Certificates inserted. */
  certificates: number;
  /** Foreign issuers inserted. */
  issuers: number;
  /** Certificates that were already stored, byte for byte, and were left alone. */
  skippedExisting: number;
  rows: ImportReportRow[];
}

/** A parsed certificate and where it came from, for error messages. */
interface ParsedCert {
  der: Buffer;
  file: string;
  line: number;
  x509: X509Certificate;
  serial: string;
  subjectDn: string;
  issuerDn: string;
  /** Hex AKI keyIdentifier, when present. */
  aki: string | undefined;
  /** Hex SKI from the extension, or computed by RFC 5280 method 1. */
  ski: string;
  isCa: boolean;
  selfIssued: boolean;
  sans: string[];
  cn: string | undefined;
  subjectSerialNumber: string | undefined;
  spkiSha256: string;
}

/** A CA certificate that may have signed something: ours, stored, or from --chain. */
interface IssuerCandidate {
  keyId: string;
  subjectDn: string;
  der: Buffer;
  x509: X509Certificate;
  source: "own" | "stored" | "chain";
}

/** A certificate ready to be written, with its decided holder and issuer. */
interface PlannedCert {
  cert: ParsedCert;
  record: Omit<CertificateRecord, "imported">;
}

const certExtensions = new Set([".pem", ".cer", ".crt", ".der"]);
// Deeper chains than this are a loop or a mistake; real PKIs use 2-4 levels.
const maxChainDepth = 10;

/**
 * Imports the certificates and holders of an institution's earlier CA.
 *
 * Everything is read, parsed and checked before anything is written, and
 * then written in one transaction, so a failed import changes nothing:
 * holders (a holder id already stored is reused when its ID number hash is
 * the same), foreign issuers (role "foreign"), certificates (via
 * insertImported; status "expired" when notAfter < now, else "active";
 * kind "file" when the subject CN ends in "#0", else the profile's kind),
 * and one audit entry per holder, issuer and certificate written. A
 * certificate already stored byte for byte is counted in skippedExisting,
 * so running the same import twice is harmless.
 *
 * Each certificate's holder is the row listing its serial in cert_serials,
 * else the holder whose id equals the subject's serialNumber attribute
 * (in the file or already stored), else the one holder whose email equals
 * an email SAN. Each certificate must be signed by one of ownIssuers, an
 * issuer already stored, or a certificate of `chain`; every chain
 * certificate must be a CA whose signature verifies up to a self-signed
 * root (validity dates are not checked: old CAs' certificates may have
 * expired, and the import records history).
 *
 * Throws (the first problem found): FILE_UNREADABLE; IMPORT_ROW_INVALID
 * {file, line, reason} for a bad holder row, a serial listed but absent, an
 * unknown profile or organisation, a holder id stored with another ID
 * number, or a different certificate stored under the same serial;
 * PEM_MALFORMED / DER_MALFORMED naming file and line of the bad block;
 * IMPORT_ISSUER_UNKNOWN {serial, issuer}; IMPORT_CHAIN_INVALID {reason} for
 * a broken chain or a certificate whose signature does not verify;
 * IMPORT_HOLDER_UNKNOWN {serial, reason}; CLI_USAGE when the default
 * profile does not exist.
 */
export async function importCertificates(deps: ImportDeps, input: ImportInput): Promise<ImportReport> {
  const { store } = deps;
  const now = input.now.getTime();
  const holdersFile = basename(input.holders);
  const rows = await readHoldersFile(input.holders);
  const certs = await loadCertificates(input.certificates);
  const chain: ParsedCert[] = [];
  for (const path of input.chain ?? []) chain.push(...await loadCertificateFile(path));

  const issuers = new IssuerPool(store, deps.ownIssuers.map((o) => {
    const p = parseCertificate(o.der, "own issuer", 0);
    return { keyId: o.keyId.toLowerCase(), subjectDn: p.subjectDn, der: o.der, x509: p.x509, source: "own" as const };
  }), chain);
  const ownKeyIds = new Set(deps.ownIssuers.map((o) => o.keyId.toLowerCase()));
  // Our own CA certificates given in --chain by mistake are ours, never "foreign".
  const foreignIssuers = (await validateChain(chain, issuers)).filter((i) => !ownKeyIds.has(i.keyId));

  // Certificates: unique, not CAs, signed by a known issuer.
  const seen = new Map<string, ParsedCert>();
  const signed: Array<{ cert: ParsedCert; issuerKeyId: string }> = [];
  for (const cert of certs) {
    if (cert.isCa) {
      throw new UkeyError("IMPORT_CHAIN_INVALID", { params: { reason: `${cert.file} line ${cert.line}: ${cert.subjectDn} is a CA certificate; give it with --chain, not as a holder's certificate` } });
    }
    const issuer = await issuers.signerOf(cert);
    if (issuer === undefined) {
      throw new UkeyError("IMPORT_ISSUER_UNKNOWN", { params: { serial: cert.serial, issuer: cert.issuerDn }, detail: `${cert.file} line ${cert.line}` });
    }
    if (issuer === "bad-signature") {
      throw new UkeyError("IMPORT_CHAIN_INVALID", { params: { reason: `certificate ${cert.serial} (${cert.file} line ${cert.line}): its signature does not verify with the key of ${cert.issuerDn}` } });
    }
    const issuerKeyId = cert.aki ?? issuer.keyId;
    const key = `${issuerKeyId}/${cert.serial}`;
    const twin = seen.get(key);
    if (twin !== undefined) {
      if (twin.der.equals(cert.der)) continue;
      throw new UkeyError("IMPORT_ROW_INVALID", { params: { file: cert.file, line: cert.line, reason: `serial ${cert.serial} of ${cert.issuerDn} also names a different certificate (${twin.file} line ${twin.line})` } });
    }
    seen.set(key, cert);
    signed.push({ cert, issuerKeyId });
  }

  // Holders: profiles and organisations exist, listed serials are present.
  const profiles = new Map<string, CertificateProfile | undefined>();
  const profile = async (id: string) => {
    if (!profiles.has(id)) profiles.set(id, (await store.profiles.get(id))?.profile);
    return profiles.get(id);
  };
  const byId = new Map(rows.map((r) => [r.id, r]));
  const bySerial = new Map<string, HolderRow>();
  const byEmail = new Map<string, HolderRow[]>();
  const presentSerials = new Set(signed.map((s) => s.cert.serial));
  for (const row of rows) {
    const fail = (reason: string) => new UkeyError("IMPORT_ROW_INVALID", { params: { file: holdersFile, line: row.line, reason } });
    if (row.profile !== null && (await profile(row.profile)) === undefined) throw fail(`profile "${row.profile}" does not exist`);
    if (row.organisationId !== null) {
      const org = byId.get(row.organisationId) ?? await store.holders.get(row.organisationId);
      if (org === undefined) throw fail(`organisation ${row.organisationId} is neither in this file nor stored`);
      if (org.kind !== "organisation") throw fail(`holder ${row.organisationId} is not an organisation`);
    }
    for (const s of row.certSerials) {
      // A serial already stored is fine: re-running an import with fewer certificates.
      if (!presentSerials.has(s) && (await store.certificates.get(s)) === undefined) {
        throw fail(`serial ${s} is listed but is not among the certificates`);
      }
      bySerial.set(s, row);
    }
    if (row.email !== null) {
      const k = row.email.toLowerCase();
      byEmail.set(k, [...byEmail.get(k) ?? [], row]);
    }
  }

  const defaultProfileId = input.defaultProfile ?? "personal";
  const planned: PlannedCert[] = [];
  for (const { cert, issuerKeyId } of signed) {
    const holder = await matchHolder(cert, { bySerial, byId, byEmail }, store);
    const profileId = holder.row?.profile ?? defaultProfileId;
    const p = await profile(profileId);
    if (p === undefined) throw new UkeyError("CLI_USAGE", { params: { reason: `the default profile "${profileId}" does not exist` } });
    planned.push({
      cert,
      record: {
        serial: cert.serial,
        issuerKeyId,
        issuerDn: cert.issuerDn,
        subjectDn: cert.subjectDn,
        sans: cert.sans,
        notBefore: cert.x509.notBefore.getTime(),
        notAfter: cert.x509.notAfter.getTime(),
        status: cert.x509.notAfter.getTime() < now ? "expired" : "active",
        revocationReason: null,
        revokedAt: null,
        spkiSha256: cert.spkiSha256,
        // Seed 003: file certificates' names end in "#0", hardware ones never do.
        kind: cert.cn?.endsWith("#0") ? "file" : p.certificateKind,
        tokenSerial: null,
        holderId: holder.id,
        profileId,
        der: cert.der,
        createdAt: now,
        updatedAt: now,
      },
    });
  }

  const holderRecords: Array<{ row: HolderRow; record: HolderRecord }> = rows.map((row) => ({
    row,
    record: {
      id: row.id,
      kind: row.kind,
      name: row.name,
      idType: row.idType,
      idHash: hashIdNumber(deps.idKey, row.idType, row.idNumber),
      idMasked: maskIdNumber(row.idNumber),
      phone: row.phone,
      email: row.email,
      organisationId: row.organisationId,
      createdAt: now,
    },
  }));
  // Organisations first, so a person's organisation exists when the person is inserted.
  holderRecords.sort((a, b) => Number(b.record.kind === "organisation") - Number(a.record.kind === "organisation"));

  return store.transaction(async (r) => {
    // Decisions that depend on what is stored are taken inside the
    // transaction, before its first write, so a concurrent import cannot
    // slip between the check and the insert.
    const newHolders: HolderRecord[] = [];
    for (const { row, record } of holderRecords) {
      const existing = await r.holders.get(record.id);
      if (existing === undefined) newHolders.push(record);
      else if (existing.idHash !== record.idHash || existing.idType !== record.idType) {
        throw new UkeyError("IMPORT_ROW_INVALID", { params: { file: holdersFile, line: row.line, reason: `holder ${row.id} is already stored with a different ID number` } });
      }
    }
    const newIssuers: IssuerCandidate[] = [];
    for (const i of foreignIssuers) if ((await r.issuers.get(i.keyId)) === undefined) newIssuers.push(i);
    const reportRows: ImportReportRow[] = [];
    const newCerts: PlannedCert[] = [];
    for (const p of planned) {
      // By serial alone: the store keys certificates by serial, whoever issued them.
      const existing = await r.certificates.get(p.record.serial);
      if (existing === undefined) {
        newCerts.push(p);
        reportRows.push({ serial: p.record.serial, issuerKeyId: p.record.issuerKeyId, holderId: p.record.holderId, status: p.record.status, outcome: "imported" });
      } else if (existing.issuerKeyId === p.record.issuerKeyId && existing.der !== null && existing.der.equals(p.cert.der)) {
        reportRows.push({ serial: existing.serial, issuerKeyId: existing.issuerKeyId, holderId: existing.holderId, status: existing.status, outcome: "existing" });
      } else {
        throw new UkeyError("IMPORT_ROW_INVALID", { params: { file: p.cert.file, line: p.cert.line, reason: `a different certificate with serial ${p.record.serial} is already stored (issuer ${existing.issuerDn})` } });
      }
    }

    const audit = (action: string, subjectType: string, subjectId: string, data: Record<string, unknown>) =>
      r.audit.append({ at: now, actor: input.actor, action, subjectType, subjectId, data });
    for (const h of newHolders) {
      await r.holders.insert(h);
      await audit("holder.imported", "holder", h.id, { kind: h.kind, idType: h.idType, idMasked: h.idMasked });
    }
    for (const i of newIssuers) {
      await r.issuers.put({ keyId: i.keyId, subjectDn: i.subjectDn, der: i.der, role: "foreign", createdAt: now });
      await audit("issuer.imported", "issuer", i.keyId, { subjectDn: i.subjectDn, role: "foreign" });
    }
    for (const { record } of newCerts) {
      await r.certificates.insertImported(record);
      await audit("certificate.imported", "certificate", record.serial, {
        issuerKeyId: record.issuerKeyId, holderId: record.holderId, profileId: record.profileId,
        status: record.status, kind: record.kind, notAfter: record.notAfter,
      });
    }
    return {
      holders: newHolders.length,
      certificates: newCerts.length,
      issuers: newIssuers.length,
      skippedExisting: planned.length - newCerts.length,
      rows: reportRows,
    };
  });
}

async function matchHolder(
  cert: ParsedCert,
  idx: { bySerial: Map<string, HolderRow>; byId: Map<string, HolderRow>; byEmail: Map<string, HolderRow[]> },
  store: ImportDeps["store"],
): Promise<{ id: string; row: HolderRow | undefined }> {
  const listed = idx.bySerial.get(cert.serial);
  if (listed) return { id: listed.id, row: listed };
  const sn = cert.subjectSerialNumber;
  if (sn !== undefined) {
    const row = idx.byId.get(sn);
    if (row) return { id: row.id, row };
    if (await store.holders.get(sn)) return { id: sn, row: undefined };
  }
  const emails = cert.sans.filter((s) => s.startsWith("email:")).map((s) => s.slice(6).toLowerCase());
  for (const e of emails) {
    const found = idx.byEmail.get(e) ?? [];
    // Two holders sharing an address say nothing about which one owns the certificate.
    if (found.length === 1) return { id: found[0]!.id, row: found[0] };
  }
  const tried = [
    "serial not in any cert_serials",
    sn === undefined ? "no subject serialNumber" : `no holder ${sn}`,
    emails.length === 0 ? "no email SAN" : `no single holder with email ${emails.join(" or ")}`,
  ];
  throw new UkeyError("IMPORT_HOLDER_UNKNOWN", { params: { serial: cert.serial, reason: tried.join("; ") }, detail: `${cert.file} line ${cert.line}, subject ${cert.subjectDn}` });
}

/** Finds the CA certificate whose key signed a certificate, among ours, the stored ones and the chain. */
class IssuerPool {
  private readonly stored = new Map<string, IssuerCandidate[]>();
  private readonly chain: IssuerCandidate[];

  constructor(private readonly store: ImportDeps["store"], private readonly own: IssuerCandidate[], chain: ParsedCert[]) {
    this.chain = chain.map((c) => ({ keyId: c.ski, subjectDn: c.subjectDn, der: c.der, x509: c.x509, source: "chain" }));
  }

  /** Candidates by AKI when the certificate has one, else by issuer name (then the SKI is computed from the candidate's key). */
  async candidates(cert: ParsedCert): Promise<IssuerCandidate[]> {
    const local = [...this.own, ...this.chain];
    if (cert.aki !== undefined) {
      const aki = cert.aki;
      const found = local.filter((c) => c.keyId === aki);
      return found.concat(await this.fromStore(`k:${aki}`, async () => {
        const i = await this.store.issuers.get(aki);
        return i ? [i] : [];
      }));
    }
    const found = local.filter((c) => c.subjectDn === cert.issuerDn);
    return found.concat(await this.fromStore(`s:${cert.issuerDn}`, () => this.store.issuers.findBySubject(cert.issuerDn)));
  }

  /** The candidate whose key verifies the certificate's signature; "bad-signature" when candidates exist but none verifies. */
  async signerOf(cert: ParsedCert, among?: IssuerCandidate[]): Promise<IssuerCandidate | "bad-signature" | undefined> {
    const candidates = among ?? await this.candidates(cert);
    if (candidates.length === 0) return undefined;
    for (const c of candidates) if (await verifies(cert.x509, c.x509)) return c;
    return "bad-signature";
  }

  private async fromStore(key: string, load: () => Promise<Array<{ keyId: string; subjectDn: string; der: Buffer }>>): Promise<IssuerCandidate[]> {
    let hit = this.stored.get(key);
    if (hit === undefined) {
      hit = (await load()).map((i) => ({ keyId: i.keyId, subjectDn: i.subjectDn, der: i.der, x509: new X509Certificate(i.der), source: "stored" as const }));
      this.stored.set(key, hit);
    }
    return hit;
  }
}

async function verifies(cert: X509Certificate, issuer: X509Certificate): Promise<boolean> {
  try {
    // signatureOnly: old certificates are imported whatever their dates.
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    // An algorithm WebCrypto lacks (e.g. SM2) cannot be verified, so it is not trusted.
    return false;
  }
}

/**
 * Checks every chain certificate: a CA, signed by its issuer (in the chain,
 * ours or stored), the path ending in a self-signed root whose own
 * signature verifies or in an issuer we already trust. Returns the chain
 * certificates as issuers to store. Throws IMPORT_CHAIN_INVALID.
 */
async function validateChain(chain: ParsedCert[], pool: IssuerPool): Promise<IssuerCandidate[]> {
  const bad = (c: ParsedCert, why: string) =>
    new UkeyError("IMPORT_CHAIN_INVALID", { params: { reason: `${c.subjectDn} (${c.file} line ${c.line}): ${why}` } });
  const parent = new Map<ParsedCert, ParsedCert | "root" | "trusted">();
  for (const c of chain) {
    if (!c.isCa) throw bad(c, "not a CA certificate (basicConstraints cA is not set)");
    if (c.selfIssued && (c.aki === undefined || c.aki === c.ski)) {
      if (!(await verifies(c.x509, c.x509))) throw bad(c, "the root's self-signature does not verify");
      parent.set(c, "root");
      continue;
    }
    const signer = await pool.signerOf(c);
    if (signer === undefined) throw bad(c, `its issuer ${c.issuerDn} is not in the chain; give the whole chain up to the root`);
    if (signer === "bad-signature") throw bad(c, `its signature does not verify with the key of ${c.issuerDn}`);
    parent.set(c, signer.source === "chain" ? chain.find((p) => p.der.equals(signer.der))! : "trusted");
  }
  // Each link verifies; walking up also rules out loops that never reach a root.
  for (const c of chain) {
    let cur: ParsedCert | "root" | "trusted" = c;
    for (let depth = 0; typeof cur !== "string"; depth++) {
      if (depth > maxChainDepth) throw bad(c, "the chain does not end in a self-signed root");
      cur = parent.get(cur)!;
    }
  }
  const unique = new Map<string, IssuerCandidate>();
  for (const c of chain) unique.set(c.ski, { keyId: c.ski, subjectDn: c.subjectDn, der: c.der, x509: c.x509, source: "chain" });
  return [...unique.values()];
}

/** Every certificate of a bundle file or of the certificate files of a directory (sorted by name). */
async function loadCertificates(path: string): Promise<ParsedCert[]> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  if (!isDir) return loadCertificateFile(path);
  let names: string[];
  try {
    names = (await readdir(path)).filter((n) => certExtensions.has(extname(n).toLowerCase())).sort();
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  if (names.length === 0) throw new UkeyError("PEM_MALFORMED", { params: { reason: `${path} holds no .pem, .cer, .crt or .der file` } });
  const out: ParsedCert[] = [];
  for (const n of names) out.push(...await loadCertificateFile(join(path, n)));
  return out;
}

/** The certificates of one file: its CERTIFICATE PEM blocks, or the file as one DER certificate. */
async function loadCertificateFile(path: string): Promise<ParsedCert[]> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  const file = basename(path);
  // A .cer or .crt may be either form: PEM when it has a BEGIN line, else DER.
  if (!data.includes("-----BEGIN ")) return [parseCertificate(data, file, 1)];
  const blocks = pemBlocks(data.toString("utf8"), file).filter((b) => b.label === "CERTIFICATE");
  if (blocks.length === 0) throw new UkeyError("PEM_MALFORMED", { params: { reason: `${file}: no CERTIFICATE block` } });
  return blocks.map((b) => parseCertificate(b.der, file, b.line));
}

/**
 * PEM blocks with the line of their BEGIN. Written here rather than taken
 * from a PEM helper because the import must say on which line a bad block
 * starts. Throws PEM_MALFORMED.
 */
function pemBlocks(text: string, file: string): Array<{ label: string; der: Buffer; line: number }> {
  const out: Array<{ label: string; der: Buffer; line: number }> = [];
  const lines = text.split(/\r?\n/);
  let open: { label: string; line: number; body: string[] } | undefined;
  const fail = (line: number, reason: string) => new UkeyError("PEM_MALFORMED", { params: { reason: `${file} line ${line}: ${reason}` } });
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    const begin = /^-----BEGIN ([A-Z0-9 ]+)-----$/.exec(l);
    const end = /^-----END ([A-Z0-9 ]+)-----$/.exec(l);
    if (begin) {
      if (open) throw fail(open.line, `${open.label} block has no END line before line ${i + 1}`);
      open = { label: begin[1]!, line: i + 1, body: [] };
    } else if (end) {
      if (!open) throw fail(i + 1, "END line without BEGIN");
      if (end[1] !== open.label) throw fail(open.line, `BEGIN ${open.label} closed by END ${end[1]}`);
      const b64 = open.body.join("");
      // Buffer.from silently skips junk; a half-decoded certificate must be refused, not truncated.
      if (b64.length === 0 || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw fail(open.line, `${open.label} block is not base64`);
      out.push({ label: open.label, der: Buffer.from(b64, "base64"), line: open.line });
      open = undefined;
    } else if (open) {
      // RFC 7468 allows headers only in legacy encrypted blocks, never in certificates.
      open.body.push(l);
    }
  }
  if (open) throw fail(open.line, `${open.label} block has no END line`);
  return out;
}

function attribute(name: Name, type: string): string | undefined {
  for (const rdn of name) for (const atv of rdn) if (atv.type === type) return atv.value.toString();
  return undefined;
}

function hexOf(b: ArrayBuffer): string {
  return Buffer.from(b).toString("hex");
}

/** Parses one certificate; throws DER_MALFORMED naming its file and line. */
function parseCertificate(der: Buffer, file: string, line: number): ParsedCert {
  let asn: Certificate;
  let x509: X509Certificate;
  try {
    asn = AsnConvert.parse(der, Certificate);
    x509 = new X509Certificate(der);
  } catch (e) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: `${file} line ${line}: not an X.509 certificate (${(e as Error).message})` }, cause: e });
  }
  const tbs = asn.tbsCertificate;
  const ext = <T>(oid: string, type: new () => T): T | undefined => {
    const e = tbs.extensions?.find((x) => x.extnID === oid);
    return e ? AsnConvert.parse(e.extnValue, type) : undefined;
  };
  let aki: AuthorityKeyIdentifier | undefined;
  let skiExt: SubjectKeyIdentifier | undefined;
  let bc: BasicConstraints | undefined;
  let san: SubjectAlternativeName | undefined;
  try {
    aki = ext(id_ce_authorityKeyIdentifier, AuthorityKeyIdentifier);
    skiExt = ext(id_ce_subjectKeyIdentifier, SubjectKeyIdentifier);
    bc = ext(id_ce_basicConstraints, BasicConstraints);
    san = ext(id_ce_subjectAltName, SubjectAlternativeName);
  } catch (e) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: `${file} line ${line}: a certificate extension is malformed (${(e as Error).message})` }, cause: e });
  }
  const sans: string[] = [];
  for (const gn of san ?? []) {
    if (gn.rfc822Name !== undefined) sans.push(`email:${gn.rfc822Name}`);
    else if (gn.dNSName !== undefined) sans.push(`dns:${gn.dNSName}`);
    else if (gn.uniformResourceIdentifier !== undefined) sans.push(`uri:${gn.uniformResourceIdentifier}`);
    else if (gn.iPAddress !== undefined) sans.push(`ip:${gn.iPAddress}`);
  }
  const spki = Buffer.from(AsnConvert.serialize(tbs.subjectPublicKeyInfo));
  return {
    der,
    file,
    line,
    x509,
    serial: serialHex(Buffer.from(tbs.serialNumber)),
    // The CA package's rendering, so that imported and issued records compare equal.
    subjectDn: nameToString(tbs.subject),
    issuerDn: nameToString(tbs.issuer),
    aki: aki?.keyIdentifier ? hexOf(aki.keyIdentifier.buffer) : undefined,
    ski: skiExt ? hexOf(skiExt.buffer) : keyIdentifier(spki).toString("hex"),
    isCa: bc?.cA === true,
    selfIssued: Buffer.from(AsnConvert.serialize(tbs.subject)).equals(Buffer.from(AsnConvert.serialize(tbs.issuer))),
    sans,
    cn: attribute(tbs.subject, "2.5.4.3"),
    subjectSerialNumber: attribute(tbs.subject, "2.5.4.5"),
    spkiSha256: createHash("sha256").update(spki).digest("hex"),
  };
}
