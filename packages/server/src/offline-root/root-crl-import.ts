import "reflect-metadata";
import { renameSync, writeFileSync } from "node:fs";
import { X509Certificate } from "@peculiar/x509";
import { UkeyError } from "@ukey/policy";
import type { ServerContext } from "../server-context.js";
import { checkRootCrl } from "./ceremony-checks.js";

/** What `ca import-root-crl` replaced. */
export interface RootCrlImport {
  number: string;
  previousNumber: string;
  thisUpdate: string;
  nextUpdate: string;
}

/**
 * Replaces the root CRL of an offline root (the yearly one, or one that
 * revokes at the ceremony): checked as at import (the root's signature and
 * name, in effect now, not revoking this server's issuing CA) and numbered
 * above the CRL in use, so an older CRL can never be put back. The file is
 * replaced atomically, the running server serves the new CRL at once, and
 * `ca.root-crl-imported` is audited.
 * @throws UkeyError CA_IMPORT_NOT_AWAITED (the root key is on this server), PEM_MALFORMED, DER_MALFORMED, ROOT_CRL_WRONG_ISSUER,
 *   ROOT_CRL_STALE, ROOT_CRL_REVOKES_ISSUING, ROOT_CRL_OLDER.
 */
export async function importRootCrl(ctx: Pick<ServerContext, "ca" | "layout" | "store" | "clock">, input: Buffer, actor: string): Promise<RootCrlImport> {
  const current = ctx.ca.installedRootCrl();
  if (!current) {
    throw new UkeyError("CA_IMPORT_NOT_AWAITED", { params: { dir: ctx.layout.dir, reason: "the root key is on this server and signs /crl/root.crl itself" } });
  }
  const now = ctx.clock.now();
  const issuingSerial = new X509Certificate(ctx.ca.issuing.der).serialNumber.toLowerCase().replace(/^(00)+(?=..)/, "");
  const crl = checkRootCrl(input, ctx.ca.root, issuingSerial, now, current.number);
  const tmp = `${ctx.layout.rootCrl}.importing`;
  writeFileSync(tmp, crl.der, { mode: 0o644 });
  await ctx.store.audit.append({
    at: now.getTime(), actor, action: "ca.root-crl-imported", subjectType: "ca", subjectId: ctx.ca.root.keyId.toString("hex"),
    data: { number: crl.number.toString(), previousNumber: current.number.toString(), thisUpdate: crl.thisUpdate.toISOString(), nextUpdate: crl.nextUpdate.toISOString() },
  });
  renameSync(tmp, ctx.layout.rootCrl);
  ctx.ca.replaceRootCrl(crl);
  return { number: crl.number.toString(), previousNumber: current.number.toString(), thisUpdate: crl.thisUpdate.toISOString(), nextUpdate: crl.nextUpdate.toISOString() };
}
