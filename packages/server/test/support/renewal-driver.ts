import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { signPossession } from "./fixtures.js";

/** What the agent holds for one renewal: the certificate's id, its current key (a PEM file), and a CSR for the new key. */
export interface RenewalJob {
  certId: string;
  keyFile: string;
  csrPem: string;
}

/**
 * Drives one renewal through the renewal API as the agent does: start the
 * order, prove possession of the current key (signing the challenge with the
 * key file, as fixtures.ts `signPossession` does), submit the CSR, complete.
 * Returns the new certificate's serial. The one place tests speak the order
 * API step by step, so that a change of that API is met here once.
 * @throws Error naming the step and the answer when a step is refused.
 */
export async function driveRenewal(app: FastifyInstance, job: RenewalJob, opts: { remoteAddress?: string } = {}): Promise<string> {
  const post = async (url: string, payload?: object): Promise<LightMyRequestResponse> => {
    const r = await app.inject({ method: "POST", url, ...(payload ? { payload } : {}), ...(opts.remoteAddress ? { remoteAddress: opts.remoteAddress } : {}) });
    if (r.statusCode >= 300) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
    return r;
  };
  const order = (await post("/api/v1/orders", { certId: job.certId, channel: "web" })).json<{ id: string; challenge?: { value: string } }>();
  const challenge = order.challenge?.value ?? (await post(`/api/v1/orders/${order.id}/challenge`)).json<{ challenge: string }>().challenge;
  await post(`/api/v1/orders/${order.id}/possession`, { signature: signPossession(order.id, challenge, job.keyFile) });
  const issued = (await post(`/api/v1/orders/${order.id}/csr`, { csr: job.csrPem })).json<{ newCertificate?: { serial: string } }>();
  await post(`/api/v1/orders/${order.id}/complete`);
  return issued.newCertificate!.serial;
}
