// Real PostgreSQL for the contract tests: scripts/ensure-postgres.sh brings up
// a private cluster, and every suite gets its own database. There is no skip:
// without PostgreSQL the suite fails and says why.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import pg from "pg";

const script = fileURLToPath(new URL("../../../../scripts/ensure-postgres.sh", import.meta.url));
let adminUrl: string | undefined;

/** The admin URL of the test cluster, starting it (once per process) when needed. Throws loudly when impossible. */
export function postgresAdminUrl(): string {
  if (adminUrl) return adminUrl;
  let out: string;
  try {
    out = execFileSync("bash", [script], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10 * 60_000 });
  } catch (e) {
    const stderr = String((e as { stderr?: unknown }).stderr ?? "");
    throw new Error(
      "\n\n*** PostgreSQL IS REQUIRED: the store's contract tests run on real PostgreSQL and it could not be started. ***\n"
      + `*** ${script} failed: ${(e as Error).message}\n${stderr}\n`);
  }
  const url = out.trim().split("\n").pop() ?? "";
  if (!url.startsWith("postgres://")) throw new Error(`\n\n*** PostgreSQL IS REQUIRED: ensure-postgres.sh printed no URL (got ${JSON.stringify(url)}) ***\n`);
  adminUrl = url;
  return url;
}

/** A fresh, empty database on the test cluster; `drop` removes it (closing stray connections). */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = postgresAdminUrl();
  const name = `ukey_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: () => withAdmin(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

async function withAdmin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
