// Child process of the issuance crash test: issues certificates forever and
// prints each serial once issue() has resolved (its commit is durable),
// until it is killed with SIGKILL.
import { readFileSync } from "node:fs";
import { fixedClock } from "@ukey/policy";
import { openServerContext } from "../../src/server-context.js";

const [dataDir, passFile, csrFile, at] = process.argv.slice(2) as [string, string, string, string];
// PostgreSQL when the parent gives a URL; the embedded database of the data directory otherwise.
const ctx = await openServerContext(dataDir, { UKEY_CA_PASSPHRASE_FILE: passFile, UKEY_DATABASE_URL: process.env.UKEY_DATABASE_URL }, fixedClock(at));
const csr = readFileSync(csrFile);
for (;;) {
  await Promise.all(Array.from({ length: 16 }, async () => {
    const c = await ctx.issuance.issue({ holderId: "H1", profileId: "personal", csr, actor: "crash-test" });
    process.stdout.write(c.serial + "\n");
  }));
}
