import type { TLSSocket } from "node:tls";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { UkeyError } from "@ukey/policy";
import type { ListenerKind } from "./server-config.js";

/** What an app knows of the listener it serves. */
export interface Listener {
  kind: ListenerKind;
  /** The client-certificate listener's port, named in refusals on the other listeners; null when there is none. */
  clientCertPort: number | null;
}

declare module "fastify" {
  interface FastifyInstance {
    /** The listener this app serves (buildApp). */
    ukeyListener: Listener;
  }
}

/** Records on `app` which listener it serves, for peerCertificate and the edge hooks. */
export function decorateListener(app: FastifyInstance, listener: Listener): void {
  app.decorate("ukeyListener", Object.freeze({ ...listener }));
}

/**
 * The DER of the client certificate presented on this request's TLS
 * connection, or undefined when the client presented none. The handshake's
 * CertificateVerify proved that the client holds the certificate's private
 * key; the chain is not checked here (Node's `authorized` is false for a CA
 * outside its store, and imported certificates come from other CAs): the
 * caller trusts the certificate only by finding it in the database or as a
 * pin on an account.
 *
 * Only the client-certificate listener asks for certificates (TLS 1.3 has
 * no renegotiation, so the TLS listener cannot ask later without showing
 * every browser a certificate picker).
 * @throws UkeyError CLIENT_CERT_PORT_REQUIRED on another listener (naming the port to use),
 *   CLIENT_CERT_PORT_NOT_CONFIGURED when the server has no client-certificate listener.
 */
export function peerCertificate(req: FastifyRequest): Buffer | undefined {
  const listener = req.server.ukeyListener;
  if (listener.kind !== "clientCert") {
    if (listener.clientCertPort === null) throw new UkeyError("CLIENT_CERT_PORT_NOT_CONFIGURED");
    throw new UkeyError("CLIENT_CERT_PORT_REQUIRED", { params: { port: listener.clientCertPort } });
  }
  const socket = req.raw.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== "function") return undefined;
  const peer = socket.getPeerCertificate(false);
  return peer && Buffer.isBuffer(peer.raw) && peer.raw.length > 0 ? peer.raw : undefined;
}
