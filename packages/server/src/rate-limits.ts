import { BlockList, isIP } from "node:net";
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest, RouteOptions } from "fastify";
import { UkeyError } from "@ukey/policy";
import type { ServerConfig } from "./server-config.js";

/** Which routes a rule covers: one method (or every one) and a URL, exact or as a prefix. */
export interface RouteMatch {
  method: string;
  url: string;
  prefix?: boolean;
}

/** A per-client limit: `max` requests to each of its routes in `windowSeconds`. */
export interface RateLimitRule {
  routes: readonly RouteMatch[];
  max: number;
  windowSeconds: number;
}

const exact = (method: string, url: string): RouteMatch => ({ method, url });
const under = (method: string, url: string): RouteMatch => ({ method, url, prefix: true });

/**
 * Every route's per-client limit, in one place: the first rule whose routes
 * match a route's method and URL is applied to it (`registerRateLimits`),
 * whichever file registers the route; routes no rule names get `default`.
 * Counts are per client address (after `trustProxy`), per route, in this
 * instance's memory: they protect the instance. What protects a holder or
 * an account across instances lives in the database (sign-in quotas and
 * back-offs).
 *
 * The defaults are set above what an institution's real traffic does,
 * clients behind one NAT included (docs/configuration.md says why each):
 * - operatorSignIn: a whole office of operators signing in at the start of a shift;
 * - holderSignInCode / holderSignInVerify: a carrier-grade NAT shared by many holders (self-service
 *   re-download's code and its check too: the same kind of request, and the same quotas behind them);
 * - renewal: an organisation renewing its keys one after another from one office;
 * - codes: download with two codes and step-up approval, where each try is a guess;
 * - est: EST enrolment (HTTP Basic codes) and re-enrolment;
 * - pki: OCSP, CRLs, CA certificates, renewal advice, the login check and the vendor table, which
 *   relying parties call at every login of their users: high, so that one
 *   relying party's login server never meets it (list the big ones in allowList);
 * - adminApi / holderApi: signed-in pages, limited so that floods of bad tokens stay cheap;
 * - downloads: the agent's installers and signed configuration (/downloads/), fetched at every agent start;
 * - health / metrics: load balancers and Prometheus;
 * - default: the portal's and console's files and anything else.
 */
export const rateLimitRules = {
  operatorSignIn: { routes: [exact("POST", "/api/v1/admin/sign-in"), exact("POST", "/api/v1/admin/sign-in/certificate")], max: 30, windowSeconds: 60 },
  holderSignInCode: { routes: [exact("POST", "/api/v1/holder/sign-in"), exact("POST", "/api/v1/redownload")], max: 20, windowSeconds: 60 },
  holderSignInVerify: { routes: [exact("POST", "/api/v1/holder/sign-in/verify"), exact("POST", "/api/v1/redownload/verify")], max: 60, windowSeconds: 60 },
  codes: { routes: [exact("POST", "/api/v1/downloads"), exact("POST", "/api/v1/downloads/check"), under("*", "/api/v1/step-up/")], max: 30, windowSeconds: 60 },
  renewal: { routes: [exact("*", "/api/v1/orders"), under("*", "/api/v1/orders/")], max: 600, windowSeconds: 60 },
  pki: {
    routes: [
      under("GET", "/ca/"), under("GET", "/crl/"), exact("POST", "/ocsp"), under("GET", "/ocsp/"),
      under("GET", "/api/v1/renewal-info/"), under("GET", "/api/v1/login-check/"), under("GET", "/.well-known/est/renewal-info/"), exact("GET", "/api/v1/key-vendors"),
    ],
    max: 60_000, windowSeconds: 60,
  },
  est: { routes: [under("*", "/.well-known/est/")], max: 60, windowSeconds: 60 },
  adminApi: { routes: [under("*", "/api/v1/admin/")], max: 1200, windowSeconds: 60 },
  holderApi: { routes: [under("*", "/api/v1/holder/")], max: 600, windowSeconds: 60 },
  downloads: { routes: [under("GET", "/downloads/")], max: 600, windowSeconds: 60 },
  health: { routes: [exact("GET", "/healthz"), exact("GET", "/readyz")], max: 600, windowSeconds: 60 },
  metrics: { routes: [exact("GET", "/metrics")], max: 120, windowSeconds: 60 },
  default: { routes: [under("*", "/")], max: 1200, windowSeconds: 60 },
} as const satisfies Record<string, RateLimitRule>;

/** The name of a rule of `rateLimitRules`. */
export type RateLimitRuleName = keyof typeof rateLimitRules;

/** Each rule's default limits, for the configuration schema. */
export const rateLimitRuleDefaults = Object.fromEntries(
  Object.entries(rateLimitRules).map(([name, r]) => [name, { max: r.max, windowSeconds: r.windowSeconds }]),
) as Record<RateLimitRuleName, { max: number; windowSeconds: number }>;

/** The rule that covers `method` `url` (a route's URL as registered, with `:params` and `*`): the first that matches. */
export function rateLimitRuleFor(method: string, url: string): RateLimitRuleName {
  for (const [name, rule] of Object.entries(rateLimitRules) as Array<[RateLimitRuleName, RateLimitRule]>) {
    for (const m of rule.routes) {
      if (m.method !== "*" && m.method !== method) continue;
      if (m.prefix ? url.startsWith(m.url) : url === m.url) return name;
    }
  }
  return "default";
}

/** Where a limited request is told to, for the refusal audit. */
export interface LimitedRequestRecorder {
  record(r: { action: string; actor: string; subjectType: string; subjectId: string; data?: Record<string, unknown> }): void;
}

/**
 * Puts a per-client limit on every route registered after this call, with
 * @fastify/rate-limit: the rule of `rateLimitRuleFor`, its numbers from
 * `config.rules`. An exceeded limit answers 429 RATE_LIMITED with
 * Retry-After, and is counted in the refusal audit as `request.rate-limited`
 * (one entry per route and client per window). Addresses and networks in
 * `config.allowList` are never limited. Nothing is limited when
 * `config.enabled` is false.
 */
export async function registerRateLimits(app: FastifyInstance, config: ServerConfig["rateLimits"], refusals: LimitedRequestRecorder): Promise<void> {
  if (!config.enabled) return;
  const allowed = blockListOf(config.allowList);
  // Exact addresses are looked up in a set first: BlockList.check builds a SocketAddress on every call.
  const exactly = new Set(config.allowList.filter((e) => !e.includes("/")));
  // Before the plugin's own onRoute hook, which reads what this one writes.
  app.addHook("onRoute", (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    // HEAD routes Fastify adds for GET ones take the GET rule.
    const name = rateLimitRuleFor(methods[0] === "HEAD" ? "GET" : String(methods[0]), route.url);
    const rule = config.rules[name];
    route.config = { ...route.config, rateLimit: { max: rule.max, timeWindow: rule.windowSeconds * 1000 } };
  });
  await app.register(rateLimit, {
    global: false,
    cache: config.clientsTracked,
    allowList: (req: FastifyRequest) => {
      // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
      const ip = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(req.ip)?.[1] ?? req.ip;
      return exactly.has(ip) || allowed.check(ip, isIP(ip) === 6 ? "ipv6" : "ipv4");
    },
    errorResponseBuilder: (_req, c) => new UkeyError("RATE_LIMITED", { params: { seconds: Math.max(1, Math.ceil(c.ttl / 1000)) } }),
    onExceeded: (req: FastifyRequest) => {
      refusals.record({
        action: "request.rate-limited", actor: "unknown", subjectType: "route", subjectId: `${req.method} ${req.routeOptions.url ?? "?"}`, data: { ip: req.ip },
      });
    },
  });
}

function blockListOf(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    const [address, bits] = e.split("/");
    const type = isIP(address!) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(address!, type);
    else list.addSubnet(address!, Number(bits), type);
  }
  return list;
}
