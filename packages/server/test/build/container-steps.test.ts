import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildBundles, productionInstall } from "../support/production-install.js";
import { freePort } from "../support/fixtures.js";

// Issue 18, the container recipe. No Docker daemon runs on this machine, so
// `docker build` and `docker run` are NOT run here; this test says so on every
// run. What it runs instead is the Dockerfile's runtime stage, step by step,
// in a clean Debian 12 root (scripts/ensure-debian-root.sh, the base of
// node:20-bookworm-slim, with libstdc++6 as that image has it): Node.js where
// the image has it, the production install (npm ci --omit=dev, the bundles),
// the user the Dockerfile makes, its ENV, `init` as that user, then its
// ENTRYPOINT + CMD as that user, and its HEALTHCHECK command, which must pass.

const repo = resolve(import.meta.dirname, "../../../..");
const dockerfile = readFileSync(join(repo, "Dockerfile"), "utf8");
const work = mkdtempSync(join(tmpdir(), "ukey-container-"));
const root = join(work, "root");
const mounts: string[] = [];
let server: ChildProcess | undefined;
after(() => {
  server?.kill("SIGKILL");
  for (const m of mounts.reverse()) spawnSync("umount", ["-l", m]);
  rmSync(work, { recursive: true, force: true });
});

/** The runtime stage: the lines after the last FROM, continuation lines joined. */
function runtimeStage(): string[] {
  const lines = dockerfile.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const from = lines.map((l, i) => (l.startsWith("FROM ") ? i : -1)).filter((i) => i >= 0).pop()!;
  return lines.slice(from);
}

const stage = runtimeStage();
const instruction = (name: string) => stage.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
const jsonArray = (text: string) => JSON.parse(text) as string[];


function inRoot(args: string[], opts: { user?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync("/usr/sbin/chroot", [...(opts.user ? [`--userspec=${opts.user}`] : []), root, ...args], {
    env: { PATH: "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/var/lib/ukey", LANG: "C.UTF-8", ...opts.env }, encoding: "utf8", timeout: 300_000,
  });
  return { status: r.status, all: `${r.stdout}${r.stderr}${r.error?.message ?? ""}` };
}

test("the Dockerfile's runtime stage, run in a clean Debian 12 root: no devDependencies, a non-root user, the data directory its volume, ukey-server serving and its HEALTHCHECK passing", { timeout: 1_200_000 }, async () => {
  const docker = spawnSync("docker", ["info", "--format", "{{.ServerVersion}}"], { encoding: "utf8" });
  console.log(docker.status === 0 && docker.stdout.trim()
    ? `# a Docker daemon (${docker.stdout.trim()}) answers here, but this test does not build the image; it runs the Dockerfile's steps in a clean root`
    : "# *** NOT RUN: docker build / docker run (no Docker daemon on this machine). Run instead: the Dockerfile's runtime steps in a clean Debian 12 root. ***");
  if (process.getuid?.() !== 0) throw new Error("\n\n*** THE CONTAINER-STEPS TEST NEEDS ROOT (debootstrap, chroot, mount) ***\n");

  // What the file promises.
  assert.match(stage[0]!, /^FROM node:20-bookworm-slim$/);
  const [user] = instruction("USER");
  assert.equal(user, "ukey", "a non-root user");
  assert.deepEqual(jsonArray(instruction("VOLUME")[0]!), ["/var/lib/ukey"]);
  const health = instruction("HEALTHCHECK")[0]!;
  assert.match(health, /\/readyz/);
  const healthCmd = jsonArray(health.slice(health.indexOf("CMD ") + 4));
  const entry = jsonArray(instruction("ENTRYPOINT")[0]!);
  const cmd = jsonArray(instruction("CMD")[0]!);
  const env = Object.fromEntries(instruction("ENV").map((e) => e.split("=") as [string, string]));
  const workdir = instruction("WORKDIR")[0]!;
  const useradd = instruction("RUN").find((r) => r.startsWith("useradd "))!;
  assert.ok(useradd, "the Dockerfile makes its user");

  // FROM node:20-bookworm-slim: Debian 12 with Node.js in /usr/local/bin.
  const made = spawnSync("bash", [join(repo, "scripts/ensure-debian-root.sh"), "--include", "libstdc++6", root], { encoding: "utf8", timeout: 900_000 });
  assert.equal(made.status, 0, `ensure-debian-root: ${made.stderr}`);
  mkdirSync(join(root, "usr/local/bin"), { recursive: true });
  copyFileSync(process.execPath, join(root, "usr/local/bin/node"));
  chmodSync(join(root, "usr/local/bin/node"), 0o755);
  for (const [fs, target] of [["proc", "proc"], ["/dev", "dev"]] as const) {
    const t = join(root, target);
    mkdirSync(t, { recursive: true });
    if (fs === "proc") execFileSync("mount", ["-t", "proc", "proc", t]);
    else execFileSync("mount", ["--bind", fs, t]);
    mounts.push(t);
  }

  // WORKDIR + npm ci --omit=dev + the COPY --from=build of the bundles: what productionInstall() makes.
  buildBundles();
  productionInstall(join(root, workdir), { modules: "copy" });
  assert.equal(existsSync(join(root, workdir, "node_modules/tsx")), false, "no devDependencies (tsx) in the image");
  assert.equal(existsSync(join(root, workdir, "node_modules/typescript")), false, "no devDependencies (typescript) in the image");
  assert.ok(existsSync(join(root, workdir, "packages/server/dist/ukey-server.mjs")));

  // The RUN that makes the user and the volume's directory, as the Dockerfile writes it.
  const made2 = inRoot(["/bin/sh", "-c", useradd]);
  assert.equal(made2.status, 0, made2.all);
  const uid = Number(inRoot(["id", "-u", "ukey"]).all.trim());
  assert.ok(uid > 0, "ukey is not root");

  // The secret as the image expects it (a read-only file), then init and start as USER.
  mkdirSync(join(root, "run/secrets"), { recursive: true });
  writeFileSync(join(root, env.UKEY_CA_PASSPHRASE_FILE!), "container ca passphrase 0123\n", { mode: 0o400 });
  chownSync(join(root, env.UKEY_CA_PASSPHRASE_FILE!), uid, uid);
  const init = inRoot([...entry, "init", "--data-dir", "/var/lib/ukey", "--json"], { user: "ukey:ukey", env });
  assert.equal(init.status, 0, init.all);

  // The root shares this machine's network: a free port stands in for the image's 8080 (the last --port wins).
  assert.deepEqual(cmd.slice(cmd.indexOf("--port"), cmd.indexOf("--port") + 2), ["--port", "8080"]);
  const port = await freePort();
  const probeCmd = healthCmd.map((a) => a.replace("127.0.0.1:8080", `127.0.0.1:${port}`));
  server = spawn("/usr/sbin/chroot", ["--userspec=ukey:ukey", root, ...entry, ...cmd, "--port", String(port), "--json"], {
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/var/lib/ukey", LANG: "C.UTF-8", ...env }, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  server.stdout!.on("data", (d) => { out += String(d); });
  server.stderr!.on("data", (d) => { out += String(d); });
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no listening line in 120 s: ${out}`)), 120_000);
    server!.stdout!.on("data", () => { if (out.includes('"event":"listening"')) { clearTimeout(timer); ok(); } });
    server!.once("exit", (c) => { clearTimeout(timer); fail(new Error(`exited ${c}: ${out}`)); });
  });
  assert.match(out, new RegExp(`"http":${port}`));
  // The HEALTHCHECK command, inside the root, as the image's user.
  const probe = inRoot(probeCmd, { user: "ukey:ukey", env });
  assert.equal(probe.status, 0, `HEALTHCHECK failed: ${probe.all}`);
  const ps = inRoot(["/bin/sh", "-c", "stat -c %U /var/lib/ukey/db/ukey.sqlite"]);
  assert.equal(ps.all.trim(), "ukey", "the database belongs to the image's user");
  server.kill("SIGTERM");
  await new Promise((r) => server!.once("exit", r));
  server = undefined;
});
