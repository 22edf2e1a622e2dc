import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { totpCodeAt } from "../src/admin/operator-credentials.js";
import { addHolder, initialisedDataDir, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";

// The real CLI and the real server process: enrol and operator add print
// their secrets once, and afterwards no password, TOTP secret,
// authorization code or ID number is found in clear in the data directory
// (database included) or in anything the server logged.
let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let server: RunningServer | undefined;
let logs = "";
const password = "the admin's long passphrase";
const idNumbers = ["11010119900307123X", "370101199001011234"];
let totpSecret = "";
const codes: string[] = [];

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
});
after(async () => {
  await server?.stop();
  t.cleanup();
});

test("operator add prints the TOTP secret and otpauth URI once; a weak password or unknown role is refused", () => {
  const cases: { name: string; args: string[]; status: number; code?: string }[] = [
    { name: "weak password", args: ["--id", "weak", "--role", "admin", "--password-file", t.write("weak.pw", "short\n")], status: 1, code: "OPERATOR_PASSWORD_WEAK" },
    { name: "unknown role", args: ["--id", "x", "--role", "root", "--password-file", t.write("x.pw", password)], status: 2, code: "CLI_USAGE" },
  ];
  for (const c of cases) {
    const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, ...c.args, "--json"], env);
    assert.equal(r.status, c.status, `${c.name}: ${r.stdout}${r.stderr}`);
    assert.equal(r.json<{ error: { code: string } }>().error.code, c.code, c.name);
  }
  const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", "root", "--role", "admin", "--password-file", t.write("root.pw", password + "\n")], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const secret = /TOTP secret: ([A-Z2-7]+)/.exec(r.stdout)?.[1];
  assert.ok(secret && secret.length >= 32, r.stdout);
  assert.match(r.stdout, new RegExp(`otpauth://totp/[^\\s]*secret=${secret}`));
  totpSecret = secret;
});

test("enrol prints the reference number, the code and how to deliver them; unknown holders and profiles are refused", () => {
  const human = runUkeyServer(["enrol", "--data-dir", dataDir, "--holder", "H1", "--profile", "personal", "--ttl-days", "7"], env);
  assert.equal(human.status, 0, human.stdout + human.stderr);
  assert.match(human.stdout, /reference number: +[0-9]{10}\n/);
  const code = /authorization code: ([2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4})/.exec(human.stdout)?.[1];
  assert.ok(code, human.stdout);
  assert.match(human.stdout, /out of band/);
  codes.push(code);
  const json = runUkeyServer(["enrol", "--data-dir", dataDir, "--holder", "H1", "--profile", "personal", "--json"], env);
  const j = json.json<{ referenceNumber: string; authorizationCode: string; enrolment: { status: string; maxAttempts: number } }>();
  assert.deepEqual([j.enrolment.status, j.enrolment.maxAttempts], ["open", 5]);
  codes.push(j.authorizationCode);
  for (const [args, code] of [[["--holder", "nobody", "--profile", "personal"], "HOLDER_NOT_FOUND"], [["--holder", "H1", "--profile", "nope"], "PROFILE_NOT_FOUND"]] as const) {
    const r = runUkeyServer(["enrol", "--data-dir", dataDir, ...args, "--json"], env);
    assert.equal(r.status, 1);
    assert.equal(r.json<{ error: { code: string } }>().error.code, code);
  }
});

test("no password, TOTP secret, authorization code or ID number in clear in the data directory or the server's logs", async () => {
  server = await startUkeyServer(dataDir, env);
  server.child.stdout!.on("data", (d) => { logs += String(d); });
  server.child.stderr!.on("data", (d) => { logs += String(d); });
  const post = async (path: string, body: unknown, token?: string) => {
    const res = await fetch(`${server!.url}/api/v1/admin${path}`, {
      method: "POST", headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() as Record<string, unknown> };
  };
  assert.equal((await post("/sign-in", { operatorId: "root", password: password + "!", totp: "123456" })).status, 401);
  const signIn = await post("/sign-in", { operatorId: "root", password, totp: totpCodeAt(totpSecret, new Date()) });
  assert.equal(signIn.status, 200, JSON.stringify(signIn.body));
  const token = signIn.body.token as string;
  assert.equal((await post("/holders", { id: "W9", name: "王五", idType: "resident-id", idNumber: idNumbers[1] }, token)).status, 201);
  assert.equal((await post("/holders/search", { idType: "resident-id", idNumber: idNumbers[0] }, token)).status, 200);
  const enrolment = await post("/enrolments", { holderId: "W9", profileId: "personal" }, token);
  assert.equal(enrolment.status, 201);
  codes.push(enrolment.body.authorizationCode as string);
  // A refused body that carries a secret: the refusal is logged, the secret is not.
  assert.equal((await post("/enrolments", { holderId: "W9", profileId: "personal", note: codes[0] }, token)).status, 400);
  await server.stop();
  server = undefined;

  const secrets = [password, totpSecret, ...codes, ...codes.map((c) => c.replace(/-/g, "")), ...idNumbers, ...idNumbers.map((n) => n.toLowerCase())];
  const files = walk(dataDir).filter((f) => !f.endsWith(".key") && !f.includes(`${join("ca", "")}`));
  assert.ok(files.some((f) => f.endsWith("ukey.sqlite")), files.join(", "));
  assert.ok(logs.length > 0, "the server logged nothing: the test would prove nothing");
  for (const s of secrets) {
    assert.ok(!logs.includes(s), `the log holds ${s}`);
    for (const f of files) assert.ok(!readFileSync(f).toString("latin1").includes(s) && !readFileSync(f).toString("utf8").includes(s), `${f} holds ${s}`);
  }
});

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}
