import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startUkeyServer, tempDir, type RunningServer, type TempDir } from "../packages/server/test/support/fixtures.js";
import { docExamples, runExample } from "../packages/server/test/support/doc-examples.js";

// The shell examples of the docs are run as written, in order, so that the
// docs cannot drift from what the programs do.

const examples = docExamples;

let t: TempDir;
let server: RunningServer | undefined;
const sh = (script: string) => runExample(t.dir, script, { UKEY_CA_PASSPHRASE_FILE: t.path("ca-passphrase") });

before(() => { t = tempDir("ukey-docs-"); });
after(async () => { await server?.stop(); t.cleanup(); });

test("operator-cli.md and renewal-api.md operator examples run as written", () => {
  const blocks = [...examples("operator-cli.md", "operator"), ...examples("renewal-api.md", "operator")];
  assert.equal(blocks.length, 6);
  for (const b of blocks) sh(b);
  assert.match(sh("ukey-server audit verify --data-dir data --json"), /"ok":true/);
});

test("ocsp-crl.md, renewal-info.md and renewal-api.md examples run as written against the running server", async () => {
  server = await startUkeyServer(t.path("data"), { UKEY_CA_PASSPHRASE_FILE: t.path("ca-passphrase") });
  const blocks = [...examples("ocsp-crl.md", "relying-party"), ...examples("renewal-info.md", "relying-party"), ...examples("renewal-api.md", "relying-party")];
  assert.equal(blocks.length, 4);
  for (const b of blocks) sh(b.replaceAll("http://localhost:8080", server.url));
});
