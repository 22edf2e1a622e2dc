import { randomBytes } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { UkeyError } from "@ukey/policy";
import type { DataDirLayout } from "../data-dir.js";

/** The data directory's key files for the RA's own secrets, next to the ID-hash key. */
export function raKeyFiles(layout: Pick<DataDirLayout, "dir">) {
  const secrets = join(layout.dir, "secrets");
  return {
    /** HMAC key of operator session tokens. */
    sessionHmac: join(secrets, "session-hmac.key"),
    /** AES-256-GCM key sealing operators' TOTP secrets. */
    operatorTotp: join(secrets, "operator-totp.key"),
    /** HMAC key under which authorization codes are stored. */
    enrolmentCode: join(secrets, "enrolment-code.key"),
    /** Seed of the Ed25519 key that signs the agent's configuration and the downloads manifest (distribution/). */
    distributionSigning: join(secrets, "distribution-signing.key"),
  } as const;
}

/**
 * Reads a 32-byte key file, creating it (mode 0600, its folder 0700) when
 * missing. The new key is written to a private temporary file and linked
 * into place, so two processes starting at once agree on one key and
 * nobody ever reads a half-written file. Every instance of a cluster must
 * be given the same file (copy `secrets/` with the rest of the data
 * directory), or tokens and codes made by one are refused by another.
 * @throws UkeyError FILE_UNREADABLE when the file cannot be read or made, or holds fewer than 32 bytes.
 */
export function readOrCreateKeyFile(path: string): Buffer {
  const read = () => {
    const key = readFileSync(path);
    if (key.length < 32) throw new UkeyError("FILE_UNREADABLE", { params: { path }, detail: "a key file holds at least 32 bytes" });
    return key;
  };
  try {
    return read();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      if (e instanceof UkeyError) throw e;
      throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause: e });
    }
  }
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(tmp, randomBytes(32), { mode: 0o600, flag: "wx" });
    try {
      linkSync(tmp, path);
    } catch (e) {
      // Another process won the race: its key is the key.
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    return read();
  } catch (e) {
    if (e instanceof UkeyError) throw e;
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause: e });
  } finally {
    rmSync(tmp, { force: true });
  }
}
