import { randomBytes } from "node:crypto";
import { get as httpGet } from "node:http";
import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyRequest } from "fastify";
import { UkeyError, type ErrorCode, type ErrorKind } from "@ukey/policy";
import type { FaultPoint, Flows, ServerConnection } from "../flows/flow-types.js";
import { institutionKeyVendors } from "../flows/key-vendor-source.js";
import type { KeyStoreBackend } from "../keys/key-store.js";
import { Operations } from "./operations.js";
import { PairingAttemptFile, PairingFile, PendingPairings, normaliseOrigin } from "./pairings.js";
import { pinPageHeaders, renderAfterPinPage, renderPinPage, renderPromptExpiredPage } from "./pin-page.js";
import {
  defaultAgentPort, localApiProtocolVersion,
  type HelloResponse, type OperationAnswer, type OperationRequest, type PairingConfirmed, type PairingStarted,
} from "./protocol.js";

/** The only address the local API listens on. */
export const localApiHost = "127.0.0.1";
/** Largest JSON body the API accepts. */
const bodyLimit = 16 * 1024;
/** The PIN page's route: the agent's own page, outside the origin rules of the API. */
const promptRoute = "/prompt/:op/:nonce";
/** Longest long-poll, in seconds. */
const maxWaitSeconds = 25;
/** How long the PIN page waits, after a PIN was posted, to tell the holder whether it was accepted. */
const afterPinWaitMs = 20_000;

export interface LocalApiOptions {
  /** Default 24817; 0 picks a free port (tests). */
  port?: number;
  /** Only "127.0.0.1" is accepted: the API is never reachable from another computer. */
  host?: string;
  /** The agent's home (pairings.json); default $UKEY_AGENT_HOME, else ~/.ukey. */
  home?: string;
  /** Origins (or URLs whose origin is meant) that may talk to the agent; the server's own origin is always added. */
  allowedOrigins: readonly string[];
  flows: Flows;
  /** Opens the key store; called once, on first need, and shared by every operation. */
  backendFactory: () => Promise<KeyStoreBackend>;
  /** The renewal server the flows talk to. */
  server: ServerConnection;
  /** Shows a pairing code to the holder (never to the page); default: a line on stderr. */
  showPairingCode?: (code: string, origin: string) => void;
  /** The agent's version for /v1/hello. */
  version: string;
  /** Default: the system clock. */
  now?: () => Date;
  /** How long an operation waits for an answer; default 10 minutes. */
  inputTimeoutMs?: number;
  /** Where event lines go (never a PIN, code or ID number); default stderr. */
  log?: (line: string) => void;
  /** Passed to the flows (UKEY_AGENT_FAULT), for crash tests. */
  fault?: FaultPoint;
}

export interface LocalApi {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  /** The origins it answers, normalised. */
  origins: readonly string[];
  home: string;
  /** Ends long-polls and open questions, closes the key store and the listener. */
  close(): Promise<void>;
}

import { defaultAgentHome } from "./agent-config.js";

export { defaultAgentHome };

const statusOfKind: Record<ErrorKind, number> = {
  invalid: 400, unauthenticated: 401, forbidden: 403, "not-found": 404, conflict: 409, "too-large": 413, "rate-limited": 429, unavailable: 503,
  internal: 500,
};
/** Where protocol.ts names another status than the kind's. */
const statusOverride: Partial<Record<ErrorCode, number>> = { CODE_INVALID: 400, PAIRING_CODE_INVALID: 400, UNSUPPORTED_MEDIA_TYPE: 415 };

function toUkeyError(err: unknown, contentType: string): UkeyError {
  if (err instanceof UkeyError) return err;
  const fe = err as Partial<FastifyError>;
  switch (fe.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new UkeyError("REQUEST_TOO_LARGE", { params: { limit: bodyLimit }, cause: err });
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: contentType.slice(0, 100) || "none" }, cause: err });
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new UkeyError("REQUEST_INVALID", { params: { reason: "the Content-Length does not match the body" }, cause: err });
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new UkeyError("REQUEST_INVALID", { params: { reason: "body is not valid JSON" }, cause: err });
  }
  if (fe.validation) return new UkeyError("REQUEST_INVALID", { params: { reason: String(fe.message) }, cause: err });
  if (err instanceof SyntaxError) return new UkeyError("REQUEST_INVALID", { params: { reason: "body is not valid JSON" }, cause: err });
  return new UkeyError("INTERNAL", { cause: err });
}

/** A problem document as the server writes it, with the message also under `zh` as protocol.ts names it. */
function problemBody(u: UkeyError, status: number) {
  const p = u.toProblem();
  return {
    type: `urn:ukey:error:${p.code}`, title: p.message.en, status, code: p.code, kind: p.kind,
    message: { zh: p.message["zh-CN"], "zh-CN": p.message["zh-CN"], en: p.message.en },
    remedy: { zh: p.remedy["zh-CN"], "zh-CN": p.remedy["zh-CN"], en: p.remedy.en },
    ...(Object.keys(u.params).length > 0 ? { params: u.params } : {}),
    ...(p.detail !== undefined ? { detail: p.detail } : {}),
  };
}

const tokenSerial = { type: "string", minLength: 1, maxLength: 64, pattern: "^[\\x21-\\x7e]+( [\\x21-\\x7e]+)*$" } as const;
const shortText = { type: "string", minLength: 1, maxLength: 64 } as const;

const operationRequestSchema = {
  type: "object",
  required: ["kind"],
  discriminator: { propertyName: "kind" },
  oneOf: [
    { properties: { kind: { const: "renew" }, tokenSerial, certSerialHex: { type: "string", pattern: "^[0-9a-fA-F:]{1,64}$" } }, required: ["kind", "tokenSerial"], additionalProperties: false },
    { properties: { kind: { const: "download" }, tokenSerial, referenceNumber: shortText, authorizationCode: shortText }, required: ["kind", "tokenSerial", "referenceNumber", "authorizationCode"], additionalProperties: false },
    { properties: { kind: { const: "initialise" }, tokenSerial, label: { type: "string", minLength: 1, maxLength: 32 } }, required: ["kind", "tokenSerial"], additionalProperties: false },
    { properties: { kind: { const: "change-pin" }, tokenSerial }, required: ["kind", "tokenSerial"], additionalProperties: false },
    { properties: { kind: { const: "clean-up" }, tokenSerial }, required: ["kind", "tokenSerial"], additionalProperties: false },
    { properties: { kind: { const: "doctor" }, knownSerial: tokenSerial }, required: ["kind"], additionalProperties: false },
    { properties: { kind: { const: "read-certificates" }, tokenSerial }, required: ["kind", "tokenSerial"], additionalProperties: false },
  ],
} as const;

const answerSchema = {
  type: "object",
  minProperties: 1,
  maxProperties: 1,
  properties: {
    idNumber: shortText,
    code: { type: "string", minLength: 1, maxLength: 32 },
    resend: { const: true },
    stepUpDone: { const: true },
    confirm: { type: "boolean" },
  },
  additionalProperties: false,
} as const;

/**
 * Starts the agent's local API (protocol.ts) on 127.0.0.1.
 *
 * Every request must name the agent by its loopback address in Host
 * (127.0.0.1:PORT or localhost:PORT), which defeats DNS rebinding; API
 * requests must come from a configured Origin (403 ORIGIN_NOT_PAIRED with no
 * CORS headers otherwise), and all but hello and pairing need a bearer token
 * issued to that origin. The PIN page under /prompt/ is the agent's own and
 * takes no CORS at all.
 * @throws UkeyError CONFIG_INVALID for another host, a bad origin or a port in use.
 */
export async function startLocalApi(o: LocalApiOptions): Promise<LocalApi> {
  const host = o.host ?? localApiHost;
  if (host !== localApiHost) {
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `the agent listens only on ${localApiHost}, not ${host}` } });
  }
  const now = o.now ?? (() => new Date());
  const log = o.log ?? ((line: string) => process.stderr.write(`ukey agent: ${line}\n`));
  const home = o.home ?? defaultAgentHome();
  const origins = [...new Set([...o.allowedOrigins.map((x) => normaliseOrigin(x)), normaliseOrigin(o.server.url, "server URL")])];
  const showPairingCode = o.showPairingCode ?? ((code: string, origin: string) => {
    process.stderr.write(`\n  配对码 Pairing code for ${origin}:  ${code}\n  只在您自己打开的该网站页面中输入。Type it only into that site's page that you opened.\n\n`);
  });
  const pairingFile = new PairingFile(home);
  const pending = new PendingPairings(now, new PairingAttemptFile(home));

  let backend: Promise<KeyStoreBackend> | undefined;
  const openBackend = () => {
    backend ??= o.backendFactory().catch((e: unknown) => { backend = undefined; throw e; });
    return backend;
  };

  let port = 0;
  const hostsAllowed = () => [`127.0.0.1:${port}`, `localhost:${port}`];
  const agentOrigin = () => `http://127.0.0.1:${port}`;

  const operations = new Operations({
    flows: o.flows,
    backend: openBackend,
    server: o.server,
    promptUrl: (id, nonce) => `${agentOrigin()}/prompt/${id}/${nonce}`,
    pairingsFile: pairingFile.path,
    now,
    log,
    ...(o.inputTimeoutMs !== undefined ? { inputTimeoutMs: o.inputTimeoutMs } : {}),
    ...(o.fault ? { fault: o.fault } : {}),
  });

  const app = Fastify({
    logger: false,
    bodyLimit,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, discriminator: true } },
    logController: new LogController({ disableRequestLogging: true }),
  });
  // Only JSON reaches the API: a form or text body is refused before any handler.
  app.removeContentTypeParser("text/plain");

  const sendProblem = (reply: FastifyReply, u: UkeyError) => {
    const status = statusOverride[u.code] ?? statusOfKind[u.kind];
    if (status >= 500) log(`internal error: ${(u.cause as Error)?.stack ?? u.message}`);
    const retryAfter = u.params.retryAfterSeconds ?? u.params.seconds;
    if (typeof retryAfter === "number" && retryAfter > 0) void reply.header("retry-after", String(Math.ceil(retryAfter)));
    return reply.status(status).type("application/problem+json").send(problemBody(u, status));
  };
  app.setErrorHandler((err, req, reply) => sendProblem(reply, toUkeyError(err, String(req.headers["content-type"] ?? ""))));
  app.setNotFoundHandler((_req, reply) => sendProblem(reply, new UkeyError("ROUTE_NOT_FOUND")));

  // Host first: a page on a rebound DNS name reaches 127.0.0.1 with its own name in Host.
  app.addHook("onRequest", async (req, reply) => {
    const hostHeader = (req.headers.host ?? "").toLowerCase();
    if (!hostsAllowed().includes(hostHeader)) {
      log(`refused a request for host ${JSON.stringify(hostHeader.slice(0, 100))}`);
      return sendProblem(reply, new UkeyError("ORIGIN_NOT_PAIRED", { params: { origin: `http://${hostHeader.slice(0, 100)}` } }));
    }
    // By the route matched, not the raw URL, so no spelling of a path escapes the origin check.
    if (req.routeOptions.url === promptRoute && req.method !== "OPTIONS") return;
    const origin = req.headers.origin;
    if (origin === undefined || !origins.includes(origin)) {
      log(`refused origin ${JSON.stringify(String(origin ?? "(none)").slice(0, 200))}`);
      return sendProblem(reply, new UkeyError("ORIGIN_NOT_PAIRED", { params: { origin: String(origin ?? "(none)").slice(0, 200) } }));
    }
    void reply.header("access-control-allow-origin", origin).header("vary", "Origin");
  });

  const originOf = (req: FastifyRequest) => req.headers.origin!;
  const bearer = (req: FastifyRequest) => {
    const m = /^Bearer ([A-Za-z0-9_-]{20,200})$/.exec(req.headers.authorization ?? "");
    return m ? pairingFile.find(originOf(req), m[1]!) : undefined;
  };
  const requirePairing = async (req: FastifyRequest) => {
    if (!bearer(req)) throw new UkeyError("ORIGIN_NOT_PAIRED", { params: { origin: originOf(req) } });
  };

  app.route({
    method: "OPTIONS",
    url: "*",
    handler: async (_req, reply) => reply.status(204)
      .header("access-control-allow-methods", "GET, POST, OPTIONS")
      .header("access-control-allow-headers", "authorization, content-type")
      .header("access-control-max-age", "600")
      // Chrome's Private Network Access, and Local Network Access that follows it.
      .header("access-control-allow-private-network", "true")
      .header("access-control-allow-local-network", "true")
      .header("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network")
      .send(),
  });

  app.get("/v1/hello", async (req): Promise<HelloResponse> => ({
    agent: "ukey-agent", version: o.version, protocol: localApiProtocolVersion, paired: bearer(req) !== undefined,
  }));

  app.post("/v1/pairings", async (req, reply): Promise<PairingStarted> => {
    const p = pending.start(originOf(req));
    log(`pairing started for ${originOf(req)}`);
    showPairingCode(p.code, originOf(req));
    void reply.status(201);
    return { id: p.id, expiresAt: p.expiresAt.toISOString() };
  });

  app.post<{ Params: { id: string }; Body: { code: string } }>("/v1/pairings/:id/confirm", {
    schema: { body: { type: "object", required: ["code"], properties: { code: { type: "string", pattern: "^[0-9]{6}$" } }, additionalProperties: false } },
  }, async (req): Promise<PairingConfirmed> => {
    let origin: string;
    try {
      origin = pending.confirm(req.params.id, originOf(req), req.body.code);
    } catch (e) {
      log(`pairing of ${originOf(req)} refused: ${(e as UkeyError).code}`);
      throw e;
    }
    const token = randomBytes(32).toString("base64url");
    pairingFile.add(origin, token, now());
    log(`paired ${origin}`);
    return { token, origin };
  });

  app.get("/v1/tokens", { preHandler: requirePairing }, async () => {
    // The table as the server publishes it now (cached ten minutes), as renewal reads it at login: the backend's is from when it opened.
    return o.flows.status({ backend: await openBackend(), server: o.server, channel: "web", vendors: await institutionKeyVendors(o.server) });
  });

  app.post<{ Body: OperationRequest }>("/v1/operations", { preHandler: requirePairing, schema: { body: operationRequestSchema } }, async (req, reply) => {
    const view = operations.start(originOf(req), req.body);
    return reply.status(202).send(view);
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, string | undefined> }>("/v1/operations/:id", { preHandler: requirePairing }, async (req) => {
    const int = (name: string, max: number) => {
      const raw = req.query[name];
      if (raw === undefined) return undefined;
      if (!/^\d{1,9}$/.test(raw)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `${name} must be a whole number` } });
      return Math.min(Number(raw), max);
    };
    const after = int("after", Number.MAX_SAFE_INTEGER);
    const revision = int("revision", Number.MAX_SAFE_INTEGER);
    const wait = int("wait", maxWaitSeconds) ?? 0;
    return operations.get(originOf(req), req.params.id, {
      ...(after !== undefined ? { after } : {}), ...(revision !== undefined ? { revision } : {}), waitMs: wait * 1000,
    });
  });

  app.post<{ Params: { id: string }; Body: OperationAnswer }>("/v1/operations/:id/input", {
    preHandler: requirePairing,
    // Before the schema, so that the refusal says why and no validation message ever carries the value.
    preValidation: async (req) => {
      const body = req.body;
      if (body && typeof body === "object" && Object.keys(body).some((k) => /pin/i.test(k))) {
        throw new UkeyError("REQUEST_INVALID", { params: { reason: "a PIN is never sent through the API: it is typed only in the agent's PIN page (input.promptUrl)" } });
      }
    },
    schema: { body: answerSchema },
  }, async (req, reply) => reply.status(202).send(operations.answer(originOf(req), req.params.id, req.body)));

  // The PIN page, in its own context: the only place a form body is parsed.
  await app.register(async (prompt) => {
    prompt.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 4096 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    const html = (reply: FastifyReply, status: number, body: string) => reply.status(status).headers(pinPageHeaders).send(body);

    prompt.get<{ Params: { op: string; nonce: string } }>(promptRoute, async (req, reply) => {
      const p = operations.pinPrompt(req.params.op, req.params.nonce);
      return p ? html(reply, 200, renderPinPage(p, agentOrigin())) : html(reply, 410, renderPromptExpiredPage(agentOrigin()));
    });

    prompt.post<{ Params: { op: string; nonce: string }; Body: Record<string, string> }>(promptRoute, async (req, reply) => {
      // Only the page itself posts here. With Referrer-Policy no-referrer a browser sends "Origin: null" for its own form.
      const origin = req.headers.origin;
      const site = req.headers["sec-fetch-site"];
      const own = [agentOrigin(), `http://localhost:${port}`, "null"];
      if ((origin !== undefined && !own.includes(origin)) || (site !== undefined && site !== "same-origin" && site !== "none")) {
        log(`refused a PIN post from ${JSON.stringify(String(origin ?? site).slice(0, 200))}`);
        return html(reply, 403, renderPromptExpiredPage(agentOrigin()));
      }
      const p = operations.pinPrompt(req.params.op, req.params.nonce);
      if (!p) return html(reply, 410, renderPromptExpiredPage(agentOrigin()));
      const body = req.body && typeof req.body === "object" ? req.body : {};
      const pin = p.keyPad ? "" : typeof body.pin === "string" ? body.pin : "";
      if (pin.length === 0 && !p.keyPad) {
        return html(reply, 400, renderPinPage(p, agentOrigin(), { zh: "请输入 PIN。", en: "Type the PIN." }));
      }
      if (p.newPin && body.pin2 !== pin) {
        return html(reply, 400, renderPinPage(p, agentOrigin(), { zh: "两次输入的新 PIN 不一致，请重新输入。", en: "The two new PINs differ; type them again." }));
      }
      if (!operations.submitPin(req.params.op, req.params.nonce, pin, p.newPin ? body.pin2 : undefined)) return html(reply, 410, renderPromptExpiredPage(agentOrigin()));
      const next = await operations.afterPin(req.params.op, afterPinWaitMs);
      // Another PIN is asked (a wrong one, or the new PIN after the SO PIN): the same window goes on to it.
      if (next.nextPin) return reply.status(303).headers(pinPageHeaders).header("location", next.nextPin.url).send("");
      return html(reply, 200, renderAfterPinPage(next.state, agentOrigin(), next.error, next.onKey));
    });
  });

  try {
    await app.listen({ host: localApiHost, port: o.port ?? defaultAgentPort });
  } catch (e) {
    operations.close();
    if ((e as NodeJS.ErrnoException).code === "EADDRINUSE") {
      // A second start (the autostart entry, or the holder by hand): say which agent holds the port, and leave it alone.
      const taken = o.port ?? defaultAgentPort;
      const running = await runningAgentVersion(taken, origins);
      throw running
        ? new UkeyError("AGENT_ALREADY_RUNNING", { params: { version: running, port: taken }, cause: e })
        : new UkeyError("AGENT_PORT_IN_USE", { params: { port: taken }, cause: e });
    }
    throw e;
  }
  const address = app.server.address();
  port = typeof address === "object" && address ? address.port : 0;
  log(`listening on ${agentOrigin()} for ${origins.join(", ")}`);

  return {
    url: agentOrigin(),
    port,
    origins,
    home,
    async close() {
      operations.close();
      await app.close();
      const b = await backend?.catch(() => undefined);
      await b?.close();
    },
  };
}

/**
 * The version of the ukey agent answering /v1/hello on `port`, asked as one of
 * `origins` (the same institution's agent serves them); undefined when nothing
 * answers within a second or what answers is not a ukey agent that serves them.
 */
async function runningAgentVersion(port: number, origins: readonly string[]): Promise<string | undefined> {
  for (const origin of origins) {
    const answer = await helloOnce(port, origin);
    if (answer === "unreachable") return undefined;
    const hello = answer as Partial<HelloResponse> | undefined;
    if (hello?.agent === "ukey-agent" && typeof hello.version === "string" && /^[0-9A-Za-z.+-]{1,40}$/.test(hello.version)) return hello.version;
  }
  return undefined;
}

/**
 * One GET /v1/hello on the loopback port: its JSON body when it answers 200, undefined for another answer, "unreachable"
 * when nothing answers within a second. node:http on a connection of its own, not fetch: fetch turns on TCP
 * keep-alive with an idle time, which Wine (the Windows executable's tests) cannot set, so fetch never connects there.
 */
function helloOnce(port: number, origin: string): Promise<unknown> {
  return new Promise((resolve) => {
    const req = httpGet({ host: localApiHost, port, path: "/v1/hello", headers: { origin }, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return resolve(undefined);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        // A hello is a few dozen bytes: whatever sends more is not a ukey agent.
        if (size > 4096) { req.destroy(); resolve(undefined); } else chunks.push(c);
      });
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch {
          resolve(undefined);
        }
      });
      res.on("error", () => resolve(undefined));
      // Cut off before its end (more than 4 KB, or past the second): not a ukey agent's hello. After "end" this is a no-op.
      res.on("close", () => resolve(undefined));
    });
    // The whole answer within a second, however it trickles in.
    const deadline = setTimeout(() => req.destroy(new Error("no answer within a second")), 1000);
    req.on("close", () => clearTimeout(deadline));
    req.on("error", () => resolve("unreachable"));
  });
}
