import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { totpCodeAt } from "../src/admin/operator-credentials.js";
import { addHolder, initialisedDataDir, startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";
import { docExamples, runExample } from "./support/doc-examples.js";

// The shell examples of docs/admin-api.md, run as written against the real
// CLI and server; $TOTP is what the operator's authenticator app would show.
let t: TempDir;
let server: RunningServer | undefined;
let env: Record<string, string>;

const examples = (group: string) => docExamples("admin-api.md", group);

const sh = (script: string, extra: Record<string, string> = {}) => runExample(t.dir, script, { ...env, ...extra });

before(() => {
  t = tempDir("ukey-admin-docs-");
  env = initialisedDataDir(t).env;
  assert.equal(addHolder(t, t.path("data"), env, "C0001").status, 0);
});
after(async () => {
  await server?.stop();
  t.cleanup();
});

test("admin-api.md examples run as written", async () => {
  const cli = examples("admin-cli");
  const api = examples("admin-api");
  assert.deepEqual([cli.length, api.length], [1, 2]);
  sh(cli[0]!);
  const secret = (JSON.parse(readFileSync(t.path("root.json"), "utf8")) as { totpSecret: string }).totpSecret;
  server = await startUkeyServer(t.path("data"), env);
  const TOTP = totpCodeAt(secret, new Date());
  for (const b of api) sh(b.replaceAll("http://localhost:8080", server.url), { TOTP });
});
