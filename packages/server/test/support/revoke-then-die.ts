// Revokes one certificate through the real service and dies (SIGKILL) at the moment the revocation has
// committed and its OCSP response is being signed again: the crash the pre-signed cache must survive.
// Usage: node --import tsx revoke-then-die.ts <dataDir> <serial>   (environment: UKEY_CA_PASSPHRASE_FILE, UKEY_DATABASE_URL)
import { systemClock } from "@ukey/policy";
import { openServerContext } from "../../src/server-context.js";

const [dataDir, serial] = process.argv.slice(2);
const ctx = await openServerContext(dataDir!, process.env, systemClock);
const signer = ctx.ca.issuingSigner as { sign(data: Buffer): Promise<Buffer> };
signer.sign = async () => {
  process.stdout.write("committed, dying before the new response is stored\n");
  process.kill(process.pid, "SIGKILL");
  return new Promise<Buffer>(() => {});
};
await ctx.revocation.revoke(serial!, "keyCompromise", "test");
process.stdout.write("survived: the test is broken\n");
