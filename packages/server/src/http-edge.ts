import type { IncomingMessage, ServerOptions, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Transform, type Readable } from "node:stream";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from "fastify";
import { UkeyError } from "@ukey/policy";
import { httpStatusOf, problemDocument, problemHandler, rawProblemResponse } from "./http-errors.js";
import { parseJsonBody, unstorableTextAt } from "./request-text.js";
import type { ListenerKind, ServerConfig } from "./server-config.js";

/** The `http` section of the configuration. */
export type HttpEdgeConfig = ServerConfig["http"];

/**
 * The headers of every answer of a listener, errors and raw refusals
 * included: `X-Content-Type-Options: nosniff` everywhere, and
 * `Strict-Transport-Security` on the TLS listeners only (RFC 6797 section
 * 7.2: a browser ignores it over plain HTTP).
 */
export function securityHeaders(http: HttpEdgeConfig, kind: ListenerKind): Readonly<Record<string, string>> {
  const headers: Record<string, string> = { "x-content-type-options": "nosniff" };
  if (kind !== "http") headers["strict-transport-security"] = `max-age=${http.hstsMaxAgeSeconds}${http.hstsIncludeSubDomains ? "; includeSubDomains" : ""}`;
  return Object.freeze(headers);
}

/**
 * Options for Node's HTTP(S) server (Fastify's `http`, or mixed into its
 * `https`): the header and request timeouts, checked often enough to hold
 * them to the second (Node's default check is every 30 s), and no Host
 * check of Node's own, which would answer 400 without a problem document
 * (the onRequest hook of registerHttpEdge checks it instead).
 */
export function nodeServerOptions(http: HttpEdgeConfig): ServerOptions {
  return {
    headersTimeout: http.headersTimeoutSeconds * 1000,
    requestTimeout: http.requestTimeoutSeconds * 1000,
    keepAliveTimeout: http.keepAliveTimeoutSeconds * 1000,
    connectionsCheckingInterval: Math.min(1000, (http.headersTimeoutSeconds * 1000) / 2),
    requireHostHeader: false,
  };
}

/** Refusals of Node's HTTP parser and timers, in catalogue codes. */
export function nodeClientError(err: { code?: string; reason?: unknown }): UkeyError {
  switch (err.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT": return new UkeyError("REQUEST_TIMEOUT");
    case "HPE_HEADER_OVERFLOW": return new UkeyError("REQUEST_HEADERS_TOO_LARGE");
    default: return new UkeyError("REQUEST_MALFORMED", { params: { reason: String(err.reason ?? err.code ?? "unreadable").slice(0, 120) } });
  }
}

/** A socket's response in progress, when Node has handed one out (its own check before answering a client error). */
type HttpSocket = Socket & { _httpMessage?: { headersSent?: boolean } };

/**
 * Answers `u` on a socket no route will answer, then closes it. The answer
 * goes only to a socket still writable with no response begun, as Node
 * does (a response half sent would be corrupted).
 */
function refuseOnSocket(socket: HttpSocket, u: UkeyError, headers: Readonly<Record<string, string>>): void {
  if (!socket.writable || socket._httpMessage?.headersSent) {
    socket.destroy();
    return;
  }
  socket.end(rawProblemResponse(u, headers));
  socket.once("finish", () => socket.destroy());
  // A client that reads nothing never lets the answer flush.
  setTimeout(() => socket.destroy(), 5000).unref();
}

/**
 * The Fastify server options of the HTTP edge: Fastify's request and
 * keep-alive timeouts, no idle-socket timeout (a slow handler must not lose
 * its answer), problem documents for router errors (frameworkErrors) and
 * for Node's client errors (clientErrorHandler: 400 from the parser, 408
 * timeouts, 431 headers too large).
 */
export function edgeFastifyOptions(http: HttpEdgeConfig, headers: Readonly<Record<string, string>>): Pick<FastifyServerOptions,
  "requestTimeout" | "keepAliveTimeout" | "connectionTimeout" | "clientErrorHandler" | "frameworkErrors"> {
  return {
    requestTimeout: http.requestTimeoutSeconds * 1000,
    keepAliveTimeout: http.keepAliveTimeoutSeconds * 1000,
    connectionTimeout: 0,
    frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply) {
      // Before routing: the onRequest hooks that set these never ran.
      void reply.headers(headers);
      problemHandler(req.log)(err, req, reply);
    },
    clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket) {
      // The client is gone: nothing to answer, nothing worth a log line.
      if (err.code === "ECONNRESET" || socket.destroyed) return;
      const u = nodeClientError(err);
      this.log.info({ code: u.code, cause: err.code }, "connection refused");
      refuseOnSocket(socket, u, headers);
    },
  };
}

/** True when the request announces a body (chunked, or a non-zero Content-Length). */
function hasBody(req: FastifyRequest): boolean {
  return req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
}

/**
 * The body stream Fastify reads, ended with REQUEST_TIMEOUT when the client
 * stays silent `ms` while sending it. A stream of its own, so that the
 * socket stays open for the 408 (destroying the request would close it).
 */
function bodyTimeoutGuard(payload: Readable, ms: number): Readable {
  const timer = setTimeout(() => {
    payload.unpipe(guard);
    payload.pause();
    guard.destroy(new UkeyError("REQUEST_TIMEOUT"));
  }, ms).unref();
  const guard = new Transform({
    transform(chunk, _encoding, done) {
      timer.refresh();
      done(null, chunk);
    },
  });
  guard.once("close", () => clearTimeout(timer));
  // Fastify stops listening once it has refused a body (413): the timer may still end the guard then.
  guard.on("error", () => {});
  // pipe() does not pass errors on: a client gone mid-body (ECONNRESET) must end the guard too.
  payload.once("error", (e) => guard.destroy(e));
  payload.pipe(guard);
  return guard;
}

/**
 * The HTTP edge of an app, for every route and plugin registered after it:
 * - the security headers (securityHeaders) on every answer;
 * - an HTTP/1.1 request without Host refused (REQUEST_MALFORMED);
 * - path parameters and query strings that hold an unpaired surrogate or
 *   NUL refused (REQUEST_TEXT_MALFORMED) before any handler reads them;
 * - application/json parsed by parseJsonBody (strict UTF-8, prototype
 *   poisoning refused, every string checked);
 * - a body whose client falls silent for `bodyTimeoutSeconds` refused (408);
 * - at most `maxConnections` open connections: Node closes the others at
 *   once; a warning says so at most once a minute, with the count;
 * - `Expect` other than 100-continue and CONNECT answered with problem
 *   documents (Node would answer 417 with no body, or drop the connection).
 */
export function registerHttpEdge(app: FastifyInstance, http: HttpEdgeConfig, headers: Readonly<Record<string, string>>): void {
  // Callback hooks, not async ones: every request passes both, and a promise per hook per request shows in profiles.
  app.addHook("onRequest", (req, reply, done) => {
    void reply.headers(headers);
    if (req.raw.httpVersion === "1.1" && req.headers.host === undefined) {
      return done(new UkeyError("REQUEST_MALFORMED", { params: { reason: "an HTTP/1.1 request needs a Host header" } }));
    }
    const inPath = unstorableTextAt(req.params);
    if (inPath !== undefined) return done(new UkeyError("REQUEST_TEXT_MALFORMED", { detail: `the path at ${inPath}` }));
    const inQuery = unstorableTextAt(req.query);
    if (inQuery !== undefined) return done(new UkeyError("REQUEST_TEXT_MALFORMED", { detail: `the query string at ${inQuery}` }));
    done();
  });

  const bodyMs = http.bodyTimeoutSeconds * 1000;
  // A body that arrived whole with its headers (most API requests: one packet) cannot stall: no guard stream for it.
  app.addHook("preParsing", (req, _reply, payload, done) => done(null, hasBody(req) && !req.raw.complete ? bodyTimeoutGuard(payload, bodyMs) : payload));

  // Fastify's own text/plain parser would hand a route a string: a page on any site may send text/plain
  // across origins without a preflight, so the API takes JSON (and EST and OCSP their own types) only.
  app.removeContentTypeParser("text/plain");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (req, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer, req.headers["content-type"]));
    } catch (e) {
      done(e as Error, undefined);
    }
  });

  const server = app.server;
  server.maxConnections = http.maxConnections;
  let dropped = 0;
  let reportedAt = -Infinity;
  server.on("drop", () => {
    dropped += 1;
    const now = performance.now();
    if (now - reportedAt < 60_000) return;
    app.log.warn({ dropped, maxConnections: http.maxConnections }, "connections over the cap closed");
    dropped = 0;
    reportedAt = now;
  });

  server.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) => {
    const u = new UkeyError("EXPECTATION_UNSUPPORTED");
    app.log.info({ code: u.code }, "request refused");
    const body = JSON.stringify(problemDocument(u));
    res.writeHead(httpStatusOf(u), {
      ...headers, "content-type": "application/problem+json; charset=utf-8", "content-length": Buffer.byteLength(body), connection: "close",
    }).end(body);
  });
  server.on("connect", (_req: IncomingMessage, socket: Socket) => {
    refuseOnSocket(socket, new UkeyError("REQUEST_MALFORMED", { params: { reason: "CONNECT is not served: this server is no proxy" } }), headers);
  });
}
