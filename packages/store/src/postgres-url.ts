import { UkeyError } from "@ukey/policy";

/** One server of a connection string: where it is, and the single-host URL node-postgres opens for it. */
export interface PostgresTarget {
  /** `host:port` as messages show it. */
  label: string;
  /** A libpq-style URL naming this host alone, with every other part of the original (user, database, sslmode, ...). */
  connectionString: string;
}

/** What `target_session_attrs` asks for. The server always needs a session that can write, so all three choose a writable server. */
export type TargetSessionAttrs = "read-write" | "primary" | "any";

/** A parsed connection string: its servers in the order to try them. */
export interface PostgresConnectionSpec {
  targets: PostgresTarget[];
  targetSessionAttrs: TargetSessionAttrs;
  /** The servers as one line for messages, e.g. `db1:5432, db2:5432`. */
  hostsLabel: string;
}

const SESSION_ATTRS: readonly string[] = ["read-write", "primary", "any"];
/** The keyword/value keys accepted; libpq has more, and an unknown one is refused rather than ignored. */
const KEYWORDS: readonly string[] = ["host", "port", "dbname", "user", "password", "sslmode", "target_session_attrs", "connect_timeout", "application_name"];

/**
 * Parses a PostgreSQL connection string as libpq accepts it, with several
 * hosts: the URL form `postgres://user@h1:p1,h2:p2/db?target_session_attrs=read-write`
 * (each host its own optional port, default 5432; IPv6 in brackets) or the
 * keyword/value form `host=h1,h2 port=p1,p2 dbname=db user=u` (one port
 * for all hosts or one per host). A single-host URL is passed on unchanged.
 * `target_session_attrs` may be `read-write`, `primary` or `any` (the
 * default); the server needs to write, so each of them makes it choose the
 * first listed server that accepts writes.
 * @throws UkeyError DATABASE_URL_INVALID naming what is wrong (never the password).
 */
export function parsePostgresConnectionString(text: string): PostgresConnectionSpec {
  const s = text.trim();
  if (/^postgres(ql)?:\/\//i.test(s)) return parseUrl(s);
  if (/^\s*[a-z_]+\s*=/i.test(s)) return parseKeywords(s);
  throw invalid("it is neither a postgres:// URL nor keyword=value pairs");
}

function parseUrl(s: string): PostgresConnectionSpec {
  const scheme = s.slice(0, s.indexOf("://") + 3);
  const afterScheme = s.slice(scheme.length);
  const authorityEnd = afterScheme.search(/[/?#]/);
  const authority = authorityEnd < 0 ? afterScheme : afterScheme.slice(0, authorityEnd);
  const rest = authorityEnd < 0 ? "" : afterScheme.slice(authorityEnd);
  const at = authority.lastIndexOf("@");
  const userinfo = at < 0 ? "" : authority.slice(0, at + 1);
  const hostspec = at < 0 ? authority : authority.slice(at + 1);
  const { path, query, attrs } = splitQuery(rest);
  const entries = hostspec.split(",");
  if (entries.length === 1) {
    // One host: node-postgres reads the URL itself (sockets, ssl parameters), as before several hosts were supported.
    const one = parseHostPort(entries[0]!, true);
    return { targets: [{ label: one.label, connectionString: `${scheme}${userinfo}${hostspec}${path}${query}` }], targetSessionAttrs: attrs, hostsLabel: one.label };
  }
  const targets = entries.map((entry) => {
    const hp = parseHostPort(entry, false);
    const connectionString = `${scheme}${userinfo}${entry}${path}${query}`;
    try {
      new URL(connectionString);
    } catch {
      throw invalid(`the host ${hp.label} does not make a valid URL`);
    }
    return { label: hp.label, connectionString };
  });
  return spec(targets, attrs);
}

function parseHostPort(entry: string, allowEmpty: boolean): { host: string; port: number; label: string } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]*)(?::([^:]*))?$/.exec(entry);
  if (!m) throw invalid(`"${entry}" is not host or host:port`);
  const host = m[1]!;
  if (host === "" && !allowEmpty) throw invalid("a host in the list is empty");
  const port = m[2] === undefined ? 5432 : portNumber(m[2], host);
  return { host, port, label: `${host || "localhost"}:${port}` };
}

function portNumber(text: string, host: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw invalid(`the port "${text}" of ${host || "the host"} is not a number from 1 to 65535`);
  return Number(text);
}

function splitQuery(rest: string): { path: string; query: string; attrs: TargetSessionAttrs } {
  const hash = rest.indexOf("#");
  const noFragment = hash < 0 ? rest : rest.slice(0, hash);
  const q = noFragment.indexOf("?");
  const path = q < 0 ? noFragment : noFragment.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : noFragment.slice(q + 1));
  const attrs = sessionAttrs(params.getAll("target_session_attrs"));
  // node-postgres does not know target_session_attrs: the choice of server is made here.
  params.delete("target_session_attrs");
  const query = params.size > 0 ? `?${params.toString()}` : "";
  return { path, query, attrs };
}

function sessionAttrs(values: readonly string[]): TargetSessionAttrs {
  if (values.length > 1) throw invalid("target_session_attrs is given more than once");
  const v = values[0] ?? "any";
  if (!SESSION_ATTRS.includes(v)) {
    throw invalid(`target_session_attrs=${v} is not supported: the server writes, so only read-write, primary or any can serve it`);
  }
  return v as TargetSessionAttrs;
}

function parseKeywords(s: string): PostgresConnectionSpec {
  const pairs = new Map<string, string>();
  const re = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s']*))/y;
  let i = 0;
  while (i < s.length) {
    if (/^\s*$/.test(s.slice(i))) break;
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) throw invalid(`cannot read keyword=value at "${s.slice(i, i + 20).replace(/password\s*=.*/i, "password=***")}"`);
    const key = m[1]!.toLowerCase();
    if (!KEYWORDS.includes(key)) throw invalid(`the keyword ${key} is not supported (supported: ${KEYWORDS.join(", ")})`);
    if (pairs.has(key)) throw invalid(`the keyword ${key} is given more than once`);
    pairs.set(key, m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3]!);
    i = re.lastIndex;
  }
  const hosts = (pairs.get("host") ?? "").split(",");
  if (hosts.some((h) => h === "")) throw invalid("host= must name every host (host=db1,db2)");
  const ports = pairs.has("port") ? pairs.get("port")!.split(",") : [];
  if (ports.length > 1 && ports.length !== hosts.length) {
    throw invalid(`${hosts.length} hosts but ${ports.length} ports: give one port for all hosts or one per host`);
  }
  const attrs = sessionAttrs(pairs.has("target_session_attrs") ? [pairs.get("target_session_attrs")!] : []);
  const user = pairs.get("user");
  const password = pairs.get("password");
  const userinfo = user === undefined ? "" : `${encodeURIComponent(user)}${password === undefined ? "" : `:${encodeURIComponent(password)}`}@`;
  const params = new URLSearchParams();
  for (const k of ["sslmode", "connect_timeout", "application_name"]) if (pairs.has(k)) params.set(k, pairs.get(k)!);
  const query = params.size > 0 ? `?${params.toString()}` : "";
  const db = pairs.has("dbname") ? `/${encodeURIComponent(pairs.get("dbname")!)}` : "";
  const targets = hosts.map((host, n) => {
    if (host.startsWith("/")) throw invalid(`the socket directory ${host}: list TCP hosts (host=db1,db2), or use a URL for a socket`);
    const port = portNumber(ports.length === 0 ? "5432" : ports.length === 1 ? ports[0]! : ports[n]!, host);
    const h = host.includes(":") ? `[${host}]` : host;
    return { label: `${host}:${port}`, connectionString: `postgres://${userinfo}${h}:${port}${db}${query}` };
  });
  return spec(targets, attrs);
}

function spec(targets: PostgresTarget[], attrs: TargetSessionAttrs): PostgresConnectionSpec {
  return { targets, targetSessionAttrs: attrs, hostsLabel: targets.map((t) => t.label).join(", ") };
}

function invalid(reason: string): UkeyError {
  return new UkeyError("DATABASE_URL_INVALID", { params: { reason } });
}
