import type { FastifyInstance } from "fastify";
import { OrderApi } from "./order-api.js";

/** What the agent holds for one renewal: the certificate's id, its current key (a PEM file), and a CSR for the new key. */
export interface RenewalJob {
  certId: string;
  keyFile: string;
  csrPem: string;
}

/**
 * Drives one renewal through the renewal API as the agent does: start the
 * order, prove possession of the current key (signing the challenge with the
 * key file, as fixtures.ts `signPossession` does; the proof answers the
 * order credential that OrderApi sends on every later step), submit the CSR,
 * complete. Returns the new certificate's serial. The one place the abuse
 * tests speak the order API step by step, so that a change of that API is
 * met here once.
 * @throws Error naming the step and the answer when a step is refused.
 */
export async function driveRenewal(app: FastifyInstance, job: RenewalJob): Promise<string> {
  const api = OrderApi.of(app);
  const check = <T extends { status: number; body: unknown }>(step: string, a: T): T => {
    if (a.status >= 300) throw new Error(`${step}: ${a.status} ${JSON.stringify(a.body)}`);
    return a;
  };
  const { id, proved } = await api.startAndProve(job.certId, job.keyFile, "web");
  check("possession", proved);
  const issued = check("csr", await api.call<{ newCertificate?: { serial: string } }>("POST", `/api/v1/orders/${id}/csr`, { csr: job.csrPem }));
  check("complete", await api.call("POST", `/api/v1/orders/${id}/complete`));
  return issued.body.newCertificate!.serial;
}
