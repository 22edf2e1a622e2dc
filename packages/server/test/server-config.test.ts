import { test } from "node:test";
import assert from "node:assert/strict";
import { UkeyError } from "@ukey/policy";
import { loadServerConfig, parseServerConfig } from "../src/server-config.js";
import { maskIdNumber, hashIdNumber } from "../src/holder-identity.js";
import { tempDir } from "./support/fixtures.js";

test("an empty configuration gets every safe default and is frozen", () => {
  const c = parseServerConfig({});
  assert.equal(c.publicUrl, "http://localhost:8080");
  assert.equal(c.listen.host, "127.0.0.1");
  assert.equal(c.listen.tlsPort, null);
  assert.deepEqual(c.ca.keyStore, { type: "file" });
  assert.equal(c.limits.bodyBytes, 65536);
  assert.equal(c.listen.clientCertPort, null);
  assert.deepEqual({ ...c.http }, {
    headersTimeoutSeconds: 10, requestTimeoutSeconds: 30, bodyTimeoutSeconds: 10, keepAliveTimeoutSeconds: 72, maxConnections: 1000,
    hstsMaxAgeSeconds: 31_536_000, hstsIncludeSubDomains: false,
  });
  assert.deepEqual({ ...c.metrics, listeners: [...c.metrics.listeners] }, { listeners: ["http"], bearerTokenFile: null });
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.ca) && Object.isFrozen(c.http));
});

const refused: Array<[string, unknown, RegExp]> = [
  ["an unknown top-level key", { colour: "blue" }, /colour/],
  ["an unknown nested key", { ca: { algoritm: "p256" } }, /algoritm/],
  ["a port out of range", { listen: { port: 70000 } }, /listen\.port/],
  ["a publicUrl that is not http(s)", { publicUrl: "ftp://x" }, /publicUrl/],
  ["an unknown algorithm", { ca: { algorithm: "ed25519" } }, /ca\.algorithm/],
  ["a PKCS#11 key store without its module", { ca: { keyStore: { type: "pkcs11", token: "t" } } }, /ca\.keyStore\.module/],
  ["a body limit too small", { limits: { bodyBytes: 10 } }, /limits\.bodyBytes/],
  ["a client-certificate port out of range", { listen: { clientCertPort: -1 } }, /listen\.clientCertPort/],
  ["no request timeout", { http: { requestTimeoutSeconds: 0 } }, /http\.requestTimeoutSeconds/],
  ["a headers timeout longer than the request timeout", { http: { headersTimeoutSeconds: 60, requestTimeoutSeconds: 30 } }, /http\.headersTimeoutSeconds: must not exceed requestTimeoutSeconds/],
  ["no connection cap", { http: { maxConnections: 0 } }, /http\.maxConnections/],
  ["an unknown http key", { http: { idleTimeout: 5 } }, /http\.idleTimeout/],
  ["an unknown metrics listener", { metrics: { listeners: ["admin"] } }, /metrics\.listeners/],
  ["a metrics listener named twice", { metrics: { listeners: ["http", "http"] } }, /metrics\.listeners/],
  ["delta CRLs valid less than 10 minutes", { ca: { deltaCrl: { enabled: true, everyMinutes: 9 } } }, /ca\.deltaCrl\.everyMinutes/],
  ["delta CRLs no more often than their complete CRL", { ca: { crlRefreshMinutes: 60, deltaCrl: { enabled: true, everyMinutes: 60 } } }, /ca\.deltaCrl\.everyMinutes: must be less than ca\.crlRefreshMinutes \(60\)/],
  ["CRLs valid no longer than their refresh interval", { ca: { crlValidityHours: 24, crlRefreshMinutes: 1440 } },
    /ca\.crlValidityHours: must be at least twice ca\.crlRefreshMinutes \(24 h is less than 2 x 1440 min\)/],
  ["CRLs valid less than twice their refresh interval", { ca: { crlValidityHours: 1, crlRefreshMinutes: 31 } }, /ca\.crlValidityHours: must be at least twice ca\.crlRefreshMinutes/],
  ["a CRL validity of 1 h beside the default refresh (60 min)", { ca: { crlValidityHours: 1 } }, /ca\.crlValidityHours: .*1 h is less than 2 x 60 min/],
  ["delta CRLs switched on by a string", { ca: { deltaCrl: { enabled: "yes" } } }, /ca\.deltaCrl\.enabled/],
  ["an unknown deltaCrl key", { ca: { deltaCrl: { enabled: true, baseMinutes: 60 } } }, /ca\.deltaCrl\.baseMinutes/],
];

test("delta CRLs are off by default, and on with a period shorter than the complete CRL's", () => {
  assert.deepEqual({ ...parseServerConfig({}).ca.deltaCrl }, { enabled: false, everyMinutes: 15 });
  assert.deepEqual({ ...parseServerConfig({ ca: { crlRefreshMinutes: 240, deltaCrl: { enabled: true, everyMinutes: 30 } } }).ca.deltaCrl }, { enabled: true, everyMinutes: 30 });
  // Off, the period is not checked against the complete CRL's: nothing uses it.
  assert.equal(parseServerConfig({ ca: { crlRefreshMinutes: 10, deltaCrl: { everyMinutes: 15 } } }).ca.deltaCrl.enabled, false);
});
test("a CRL valid at least twice its refresh interval is accepted, up to the longest refresh", () => {
  assert.equal(parseServerConfig({ ca: { crlValidityHours: 1, crlRefreshMinutes: 30 } }).ca.crlValidityHours, 1);
  assert.equal(parseServerConfig({ ca: { crlValidityHours: 2 } }).ca.crlRefreshMinutes, 60);
  assert.equal(parseServerConfig({ ca: { crlValidityHours: 48, crlRefreshMinutes: 1440 } }).ca.crlValidityHours, 48);
});
for (const [name, input, where] of refused) {
  test(`refuses ${name}`, () => {
    assert.throws(() => parseServerConfig(input), (e: unknown) => e instanceof UkeyError && e.code === "CONFIG_INVALID" && where.test(e.message));
  });
}

test("a JSON syntax error names its line", () => {
  const t = tempDir();
  try {
    const p = t.write("config.json", '{\n  "publicUrl": "http://x",\n  "listen": { "port": 80, }\n}\n');
    assert.throws(() => loadServerConfig(p), (e: unknown) => e instanceof UkeyError && e.code === "CONFIG_INVALID" && /line 3/.test(e.message));
    assert.throws(() => loadServerConfig(t.path("missing.json")), (e: unknown) => e instanceof UkeyError && e.code === "FILE_UNREADABLE");
  } finally {
    t.cleanup();
  }
});

test("ID numbers are masked and hashed after normalising", () => {
  assert.equal(maskIdNumber("11010119900307123x"), "1101**********123X");
  assert.equal(maskIdNumber("A123456"), "A*****6");
  const key = Buffer.alloc(32, 1);
  assert.equal(hashIdNumber(key, "resident-id", "11010119900307123x"), hashIdNumber(key, "resident-id", " 110101 19900307123X"));
  assert.notEqual(hashIdNumber(key, "resident-id", "1"), hashIdNumber(key, "passport", "1"));
  assert.notEqual(hashIdNumber(key, "resident-id", "1"), hashIdNumber(Buffer.alloc(32, 2), "resident-id", "1"));
});

test("a wrong field is reported with the line it is on; comments are allowed", () => {
  const t = tempDir();
  try {
    const text = [
      "{",
      "  // the address holders reach",
      '  "publicUrl": "https://pki.example.com",',
      '  "listen": {',
      '    "port": 8080,',
      '    "tlsPort": "8443"',
      "  },",
      '  "ca": { "algoritm": "p256" }',
      "}",
    ].join("\n");
    const bad = t.write("bad.json", text);
    assert.throws(() => loadServerConfig(bad), (e: unknown) => e instanceof UkeyError && /line 6: listen\.tlsPort/.test(e.message));
    const unknown = t.write("unknown.json", text.replace('"tlsPort": "8443"', '"tlsPort": 8443'));
    assert.throws(() => loadServerConfig(unknown), (e: unknown) => e instanceof UkeyError && /line 8: ca\.algoritm/.test(e.message));
    const good = t.write("good.json", text.replace('"tlsPort": "8443"', '"tlsPort": 8443').replace('"algoritm"', '"algorithm"'));
    assert.equal(loadServerConfig(good).listen.tlsPort, 8443);
  } finally {
    t.cleanup();
  }
});
