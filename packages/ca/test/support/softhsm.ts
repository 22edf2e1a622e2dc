import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** A freshly initialised SoftHSM2 token in a private token directory. */
export interface SoftHsmToken {
  module: string;
  tokenLabel: string;
  tokenSerial: string;
  pin: string;
  soPin: string;
  /** The SOFTHSM2_CONF file, also set in process.env. */
  conf: string;
  cleanup(): void;
}

const script = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../scripts/ensure-softhsm.sh");

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", env });
  if (r.error || r.status !== 0) {
    // Loud on purpose: the HSM tests must never turn into a silent skip.
    throw new Error(`SoftHSM2 is required for the PKCS#11 tests and could not be set up: ${cmd} ${args.join(" ")} failed: ${r.error?.message ?? ""}${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/**
 * Installs SoftHSM2 when needed (scripts/ensure-softhsm.sh), writes a
 * private SOFTHSM2_CONF with its own token directory, sets it in
 * process.env (SoftHSM2 reads it at C_Initialize, so before any store is
 * opened) and initialises one token. Throws, never skips, when SoftHSM2
 * cannot be had.
 */
export function createSoftHsmToken(tokenLabel = "ukey-ca-test", pin = "1234-user", soPin = "5678-so"): SoftHsmToken {
  const module = run("bash", [script]).trim();
  const dir = mkdtempSync(join(tmpdir(), "ukey-softhsm-"));
  mkdirSync(join(dir, "tokens"));
  const conf = join(dir, "softhsm2.conf");
  writeFileSync(conf, `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  process.env.SOFTHSM2_CONF = conf;
  run("softhsm2-util", ["--init-token", "--free", "--label", tokenLabel, "--pin", pin, "--so-pin", soPin]);
  const slots = run("softhsm2-util", ["--show-slots"]);
  const block = slots.split(/Token info:/).find((b) => new RegExp(`Label:\\s+${tokenLabel}\\s*$`, "m").test(b));
  const serial = block && /Serial number:\s+(\S+)/.exec(block)?.[1];
  if (!serial) throw new Error(`cannot read the serial of SoftHSM2 token ${tokenLabel}:\n${slots}`);
  return { module, tokenLabel, tokenSerial: serial, pin, soPin, conf, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
