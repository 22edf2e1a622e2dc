import { readFileSync } from "node:fs";
import { findNodeAtLocation, parseTree, printParseErrorCode, type Node, type ParseError } from "jsonc-parser";
import { z } from "zod";
import { isIP } from "node:net";
import { deliveryConfigSchema } from "./delivery/index.js";
import { rateLimitRuleDefaults, type RateLimitRuleName } from "./rate-limits.js";
import { ProfileInvalidError, UkeyError, defaultProfile, keyAlgorithms, keyVendorTableSchema, parseProfiles, type CertificateProfile } from "@ukey/policy";

const port = z.number().int().min(0).max(65535);

/** An IPv4 or IPv6 address, or a network in CIDR form ("10.0.0.0/8", "2001:db8::/32"). */
const addressOrNetwork = z.string().refine((v) => {
  const [address, bits, ...rest] = v.split("/");
  const family = isIP(address ?? "");
  if (!family || rest.length) return false;
  if (bits === undefined) return true;
  return /^[0-9]{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}, { message: "an IP address or a network such as 10.0.0.0/8" });

const rateLimitRule = (d: { max: number; windowSeconds: number }) => z.strictObject({
  /** Requests one client may make to one route in a window. */
  max: z.number().int().min(1).max(10_000_000).default(d.max),
  windowSeconds: z.number().int().min(1).max(86_400).default(d.windowSeconds),
}).prefault({});

const rateLimitRulesSchema = z.strictObject(Object.fromEntries(
  Object.entries(rateLimitRuleDefaults).map(([name, d]) => [name, rateLimitRule(d)]),
) as Record<RateLimitRuleName, ReturnType<typeof rateLimitRule>>).prefault({});

/**
 * Abuse limits (docs/configuration.md, "Abuse limits"): per-client request
 * limits of every route, which proxies to believe about the client's
 * address, the audit of refusals, and the limits of sign-in.
 */
const abuseSchemas = {
  /**
   * Which reverse proxies' X-Forwarded-For is believed: false (default: the
   * connection's address is the client), the number of proxy hops in front
   * of the server, or the proxies' addresses and networks. Never every
   * address: a client reaching the server directly could then name any
   * address and escape its limits.
   */
  trustProxy: z.union([z.literal(false), z.number().int().min(1).max(10), z.array(addressOrNetwork).min(1).max(256)]).default(false),
  rateLimits: z.strictObject({
    /** false: no per-client request limits (only behind a gateway that limits them itself). */
    enabled: z.boolean().default(true),
    /** Clients never limited: relying parties' OCSP clients, monitoring. Addresses or networks. */
    allowList: z.array(addressOrNetwork).max(1024).default([]),
    /** Clients remembered per route; beyond it the least recently seen is forgotten. */
    clientsTracked: z.number().int().min(100).max(1_000_000).default(10_000),
    /** Limits per group of routes (src/rate-limits.ts lists the routes of each). */
    rules: rateLimitRulesSchema,
  }).prefault({}),
  audit: z.strictObject({
    /** Refusals (bad tokens, refused sign-ins, limited requests) are counted per window, one audit entry each. */
    refusalWindowSeconds: z.number().int().min(1).max(3600).default(60),
    /** Distinct refusals kept per window; the rest are counted in one overflow entry. */
    refusalEntriesPerWindow: z.number().int().min(10).max(100_000).default(1000),
  }).prefault({}),
  signIn: z.strictObject({
    /** Operator password hashes (scrypt, 32 MiB each) computed at once. */
    concurrentHashes: z.number().int().min(1).max(16).default(1),
    /** Sign-ins waiting for a hash; beyond it a sign-in is refused at once (SIGN_IN_BUSY). */
    waitingHashes: z.number().int().min(0).max(10_000).default(16),
    /** Failed operator sign-ins from one address to one account before that pair pauses. */
    operatorFailuresBeforePause: z.number().int().min(1).max(100).default(5),
    /** The first pause, doubled after each further failure. */
    operatorFirstPauseSeconds: z.number().int().min(1).max(86_400).default(60),
    /** The longest pause. */
    operatorMaxPauseSeconds: z.number().int().min(1).max(7 * 86_400).default(3600),
    /** Sign-in codes sent for one customer number in 24 hours. */
    holderCodesPerDay: z.number().int().min(1).max(1000).default(10),
    /** Wrong sign-in codes for one customer number in 24 hours before sign-in pauses. */
    holderWrongCodesPerDay: z.number().int().min(1).max(1000).default(20),
  }).prefault({}),
};
/** The listeners a server opens: plain HTTP, HTTPS, and HTTPS that asks for client certificates. */
export const listenerKinds = ["http", "tls", "clientCert"] as const;

/** One listener kind. */
export type ListenerKind = (typeof listenerKinds)[number];

const seconds = (max: number) => z.number().int().min(1).max(max);

/**
 * The `http` section: timeouts that close connections of clients too slow
 * to be honest, the connection cap, and HSTS. Node checks the header and
 * request timeouts every second at most, so a connection may outlive them
 * by up to a second.
 */
const httpEdgeSchema = z.strictObject({
  /** Seconds a client has to send the request line and headers (a connection that sends nothing included). */
  headersTimeoutSeconds: seconds(300).default(10),
  /** Seconds a client has to send the whole request, headers and body. */
  requestTimeoutSeconds: seconds(3600).default(30),
  /** Longest silence, in seconds, while a request body is arriving. */
  bodyTimeoutSeconds: seconds(3600).default(10),
  /**
   * Seconds an idle kept-alive connection stays open: more than a load balancer's idle timeout (60 s on
   * most), so that it never reuses a connection the server is closing; Fastify's own default.
   */
  keepAliveTimeoutSeconds: seconds(3600).default(72),
  /** Open connections per listener; more are closed at once. */
  maxConnections: z.number().int().min(1).max(1_000_000).default(1000),
  /** Strict-Transport-Security max-age on the TLS listeners' answers, in seconds; 0 tells browsers to forget it. */
  hstsMaxAgeSeconds: z.number().int().min(0).max(2 * 31_536_000).default(31_536_000),
  /** Add includeSubDomains to Strict-Transport-Security: only when every subdomain serves HTTPS. */
  hstsIncludeSubDomains: z.boolean().default(false),
}).refine((h) => h.headersTimeoutSeconds <= h.requestTimeoutSeconds, {
  path: ["headersTimeoutSeconds"], message: "must not exceed requestTimeoutSeconds",
});

/**
 * The server's configuration file (`<data-dir>/config.json`), written by
 * `ukey-server init` and edited by operators. Unknown keys are rejected;
 * every field has a safe default; secrets are never here, only paths to
 * files that hold them (see docs/configuration.md).
 */
export const serverConfigSchema = z.strictObject({
  version: z.literal(1).default(1),
  /** Base URL holders and relying parties reach; CRL, OCSP and CA-issuer URLs in certificates derive from it. */
  publicUrl: z.url({ protocol: /^https?$/ }).default("http://localhost:8080"),
  listen: z.strictObject({
    host: z.string().min(1).default("127.0.0.1"),
    port: port.default(8080),
    /** HTTPS port; it never asks for a client certificate. null for none. */
    tlsPort: port.nullable().default(null),
    /** HTTPS port that asks for (but does not require) a client certificate: EST re-enrolment, certificate sign-in. null for none. */
    clientCertPort: port.nullable().default(null),
  }).prefault({}),
  institution: z.strictObject({
    /** organizationName written into subjects. */
    name: z.string().min(1).max(64).default("ukey-renew demo"),
    /** countryName written into subjects (ISO 3166 alpha-2). */
    country: z.string().regex(/^[A-Z]{2}$/).default("CN"),
  }).prefault({}),
  /**
   * The key management centre (docs/configuration.md): where its master key
   * is. null (the default): no KMC, and a profile with a certificate pair
   * refuses the start (KMC_REQUIRED). "file": data/kmc/master-key.json made
   * by `ukey-server kmc init`, its passphrase in the file
   * UKEY_KMC_PASSPHRASE_FILE names (never the CA's). "pkcs11": an AES-256
   * key `label` on an HSM token, its PIN in the file UKEY_KMC_HSM_PIN_FILE names.
   */
  kmc: z.strictObject({
    masterKey: z.discriminatedUnion("type", [
      z.strictObject({ type: z.literal("file") }),
      z.strictObject({
        type: z.literal("pkcs11"),
        module: z.string().min(1),
        /** Token label or serial number. */
        token: z.string().min(1),
        labelPrefix: z.string().min(1).default("ukey-"),
        label: z.string().min(1).default("kmc-master"),
      }),
    ]),
  }).nullable().default(null),
  ca: z.strictObject({
    algorithm: z.enum(keyAlgorithms as [string, ...string[]]).default("p256"),
    keyStore: z.discriminatedUnion("type", [
      z.strictObject({ type: z.literal("file") }),
      z.strictObject({
        type: z.literal("pkcs11"),
        module: z.string().min(1),
        /** Token label or serial number (never a slot number: slots move). */
        token: z.string().min(1),
        labelPrefix: z.string().min(1).default("ukey-"),
      }),
    ]).default({ type: "file" }),
    /**
     * Where the root CA's key is: "server" (made by init, kept in the key store, signs /crl/root.crl) or
     * "offline" (init --offline-root: the root key never reaches the server; /crl/root.crl is the file
     * `ca import-root-crl` installed, docs/deployment.md).
     */
    rootKey: z.enum(["server", "offline"]).default("server"),
    /**
     * Hours between thisUpdate and nextUpdate of a CRL; at least twice crlRefreshMinutes (checked in
     * parseServerConfig, CONFIG_INVALID), so that no CRL is served past its nextUpdate.
     */
    crlValidityHours: z.number().int().min(1).max(24 * 30).default(24 * 7),
    /**
     * Partitioned CRLs: certificates issued from now on name shard k of n (by the first octet of their
     * serial) at /crl/issuing/k.crl, each shard with its issuingDistributionPoint. 1: one CRL.
     */
    crlShards: z.number().int().min(1).max(256).default(1),
    /**
     * CRLs are re-signed at least this often, and at once after a revocation (with delta CRLs on: complete
     * CRLs only this often, and the deltas at once).
     */
    crlRefreshMinutes: z.number().int().min(1).max(24 * 60).default(60),
    /**
     * Delta CRLs (RFC 5280 5.2.4): off by default. When on, each complete CRL (and each shard) has a delta at
     * /crl/issuing-delta.crl (/crl/issuing/k-delta.crl) listing what changed since it, valid `everyMinutes`,
     * re-signed at once after a revocation and 5 minutes before its nextUpdate (the routes' max-age), so at least
     * every `everyMinutes` - 5; certificates issued from then
     * on carry freshestCRL. `everyMinutes` must be shorter than crlRefreshMinutes (docs/configuration.md).
     */
    deltaCrl: z.strictObject({
      enabled: z.boolean().default(false),
      everyMinutes: z.number().int().min(10).max(24 * 60).default(15),
    }).prefault({}),
    /** Hours between thisUpdate and nextUpdate of an OCSP response. */
    ocspValidityHours: z.number().int().min(1).max(24 * 7).default(24),
    /**
     * "ignore": a request's nonce is left out of the answer, which comes pre-signed from the store (RFC 5019
     * 2.2.1); "echo": requests with a nonce are signed on the request path and echo it.
     */
    ocspNonces: z.enum(["ignore", "echo"]).default("ignore"),
    /** Longest Cache-Control max-age of an OCSP GET answer, in seconds (never past its nextUpdate). */
    ocspMaxAgeSeconds: z.number().int().min(0).max(24 * 3600).default(600),
  }).prefault({}),
  limits: z.strictObject({
    /** Largest request body accepted, in bytes. */
    bodyBytes: z.number().int().min(1024).max(10 * 1024 * 1024).default(64 * 1024),
  }).prefault({}),
  /** Every listener's defences against slow and greedy clients, and HSTS on the TLS ones (docs/configuration.md). */
  http: httpEdgeSchema.prefault({}),
  /** The agent's installers and the institution's signed agent configuration, served at /downloads/ (docs/agent-install.md). */
  downloads: z.strictObject({
    /** The folder `ukey-server downloads publish` fills; relative to the data directory. */
    dir: z.string().min(1).default("downloads"),
    /** Portal origins the agent offers pairing to besides publicUrl's (the holder still pairs each with the agent's code). */
    portalOrigins: z.array(z.url({ protocol: /^https?$/ })).max(16).default([]),
  }).prefault({}),
  /** Who may read GET /metrics: which listeners serve it, and a bearer token (docs/reminders.md). */
  metrics: z.strictObject({
    listeners: z.array(z.enum(listenerKinds)).max(listenerKinds.length).refine((l) => new Set(l).size === l.length, "lists a listener twice").default(["http"]),
    /** File holding the token scrapers send as Authorization: Bearer; relative to the data directory; null: no token asked. */
    bearerTokenFile: z.string().min(1).nullable().default(null),
  }).prefault({}),
  /**
   * Certificate profiles: `{ "id": ..., "preset": ..., ...overrides }`
   * (docs/policies.md). Parsed by the policy's own parser after this schema.
   */
  profiles: z.array(z.unknown()).min(1).default([defaultProfile]),
  /** How one-time codes and notices reach holders: outbox (default), SMS webhook, SMTP; see docs/delivery.md. */
  delivery: deliveryConfigSchema.prefault({}),
  /** Key vendors added to (or replacing by id) the built-in table; see docs/key-vendors.md. */
  keyVendors: keyVendorTableSchema.default([]),
  issuance: z.strictObject({
    /** Most certificates committed in one group commit. */
    batchSize: z.number().int().min(1).max(4096).default(256),
    /** An issuance intent still pending this many seconds after it was recorded is abandoned (its process stopped). */
    abandonAfterSeconds: z.number().int().min(60).max(86_400).default(300),
    /** Seconds between sweeps for such intents in a listening server (also one at every start). */
    sweepIntervalSeconds: z.number().int().min(5).max(3600).default(60),
  }).prefault({}),
  storage: z.strictObject({
    /** Requests refused because storage failed are logged once, then as one line with a count per this many seconds. */
    failureLogSeconds: z.number().int().min(1).max(3600).default(10),
  }).prefault({}),
  /** Expiry reminders (docs/reminders.md): the scheduler's period, retries and batch. */
  reminders: z.strictObject({
    /** false: this instance neither scans nor sends (another may). */
    enabled: z.boolean().default(true),
    /** Seconds between runs, each delayed by up to a tenth more at random so that instances spread out. */
    intervalSeconds: z.number().int().min(10).max(86_400).default(300),
    /** Sending rounds per reminder before it is marked failed. */
    maxAttempts: z.number().int().min(1).max(20).default(5),
    /** Wait before the second round, doubled before each further one (at most a day). */
    retryBaseSeconds: z.number().int().min(1).max(86_400).default(300),
    /** Reminders claimed at once by one sender. */
    batchSize: z.number().int().min(1).max(1000).default(200),
  }).prefault({}),
  ...abuseSchemas,
});

export type ServerConfig = Readonly<Omit<z.output<typeof serverConfigSchema>, "profiles"> & { profiles: readonly CertificateProfile[] }>;

/** Where in the configuration text a path points, for messages that name the line. */
export type LineOf = (path: ReadonlyArray<string | number>) => number | undefined;

/**
 * Parses and freezes a configuration object.
 * @throws UkeyError CONFIG_INVALID naming the first wrong field (and its line, given `lineOf`).
 */
export function parseServerConfig(input: unknown, source = "config.json", lineOf?: LineOf): ServerConfig {
  const r = serverConfigSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    // An unknown key is reported at the key itself, not at the object holding it.
    const path = issue.code === "unrecognized_keys" && issue.keys[0] ? [...issue.path, issue.keys[0]] : issue.path;
    const at = path.filter((p): p is string | number => typeof p !== "symbol");
    throw configError(source, at, issue.message, lineOf);
  }
  let profiles: CertificateProfile[];
  try {
    profiles = parseProfiles(r.data.profiles);
  } catch (e) {
    if (e instanceof ProfileInvalidError) {
      const c = configError(source, ["profiles", ...e.path], String(e.params.reason), lineOf);
      // A pair for keys that cannot have one keeps its own code: its remedy says what is built.
      throw e.code === "PROFILE_PAIR_ALGORITHM_UNSUPPORTED" ? new UkeyError(e.code, { params: c.params }) : c;
    }
    throw e;
  }
  // RFC 5280 5.1.2.5: the next CRL is issued no later than nextUpdate, so the validity is at least the refresh
  // interval; twice leaves a whole interval in reserve for a relying party holding the copy fetched just
  // before a refresh, an HTTP cache's max-age, clock skew and an outage of the CRL route (the CA/B Forum
  // BRs 4.9.7 pair 7-day issuance with at most 10 days' validity: a reserve of 3 days).
  const ca = r.data.ca;
  if (ca.crlValidityHours * 60 < 2 * ca.crlRefreshMinutes) {
    throw configError(source, ["ca", "crlValidityHours"],
      `must be at least twice ca.crlRefreshMinutes (${ca.crlValidityHours} h is less than 2 x ${ca.crlRefreshMinutes} min), or a CRL re-signed only every ca.crlRefreshMinutes could be served past its nextUpdate`, lineOf);
  }
  // A delta re-signed no more often than its complete CRL would never list anything.
  const delta = r.data.ca.deltaCrl;
  if (delta.enabled && delta.everyMinutes >= r.data.ca.crlRefreshMinutes) {
    throw configError(source, ["ca", "deltaCrl", "everyMinutes"], `must be less than ca.crlRefreshMinutes (${r.data.ca.crlRefreshMinutes})`, lineOf);
  }
  return deepFreeze({ ...r.data, profiles });
}

/** CONFIG_INVALID for `path` of `source`, with its line when known. */
export function configError(source: string, path: ReadonlyArray<string | number>, message: string, lineOf?: LineOf): UkeyError {
  const where = path.length ? path.join(".") : "(top level)";
  const line = lineOf?.(path);
  return new UkeyError("CONFIG_INVALID", { params: { reason: `${source}${line ? ` line ${line}` : ""}: ${where}: ${message}` } });
}

/**
 * Parses configuration text: JSON, with comments allowed so that operators
 * can say why a value is what it is. Returns the value and a function that
 * finds the line of a path (the deepest existing node on it).
 * @throws UkeyError CONFIG_INVALID with the line of a syntax error.
 */
export function parseConfigText(text: string, source: string): { value: unknown; lineOf: LineOf } {
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { allowTrailingComma: false, disallowComments: false });
  const lineAt = (offset: number) => text.slice(0, offset).split("\n").length;
  if (errors.length || !tree) {
    const e = errors[0];
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `${source}${e ? ` line ${lineAt(e.offset)}` : ""}: not valid JSON (${e ? printParseErrorCode(e.error) : "empty"})` } });
  }
  const lineOf: LineOf = (path) => {
    for (let n = path.length; n >= 0; n--) {
      const node: Node | undefined = findNodeAtLocation(tree, path.slice(0, n) as (string | number)[]);
      if (node) return lineAt(node.parent?.type === "property" ? node.parent.offset : node.offset);
    }
    return undefined;
  };
  return { value: evaluateTree(tree), lineOf };
}

function evaluateTree(node: Node): unknown {
  switch (node.type) {
    case "object": return Object.fromEntries((node.children ?? []).map((p) => [p.children![0]!.value as string, evaluateTree(p.children![1]!)]));
    case "array": return (node.children ?? []).map(evaluateTree);
    default: return node.value;
  }
}

/**
 * Reads `<path>` and parses it.
 * @throws UkeyError FILE_UNREADABLE, CONFIG_INVALID (with the line that is wrong).
 */
export function loadServerConfig(path: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  const { value, lineOf } = parseConfigText(text, path);
  return parseServerConfig(value, path, lineOf);
}

/**
 * Reads a secret from the file an environment variable names (`*_FILE`),
 * dropping one trailing newline.
 * @throws UkeyError SECRET_FILE_REQUIRED when the variable is unset, FILE_UNREADABLE.
 */
export function readSecretFile(variable: string, path: string | undefined): string {
  if (!path) throw new UkeyError("SECRET_FILE_REQUIRED", { params: { variable } });
  try {
    return readFileSync(path, "utf8").replace(/\r?\n$/, "");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
