import { createHash, randomBytes, randomInt, randomUUID, timingSafeEqual } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { UkeyError } from "@ukey/policy";

/** How long a pairing code can be typed. */
export const pairingLifetimeMs = 2 * 60 * 1000;
/** Wrong codes that end a pairing. */
export const pairingMaxTries = 5;

/** One origin's bearer token, as stored: never the token, only its SHA-256. */
export interface StoredPairing {
  id: string;
  origin: string;
  /** SHA-256 of the bearer token, lower-case hex. */
  tokenSha256: string;
  createdAt: string;
}

const pairingsFileSchema = z.strictObject({
  version: z.literal(1),
  pairings: z.array(z.strictObject({
    id: z.string().min(1),
    origin: z.string().min(1),
    tokenSha256: z.string().regex(/^[0-9a-f]{64}$/),
    createdAt: z.string().min(1),
  })),
});

/**
 * Normalises an origin as browsers send it (scheme://host[:port], no path,
 * default ports dropped, lower case). Accepts a whole URL and keeps only its
 * origin, so a server URL with a path names its site.
 * @throws UkeyError CONFIG_INVALID (`what` names the source) for anything but an http(s) URL.
 */
export function normaliseOrigin(value: string, what = "origin"): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `${what} ${JSON.stringify(value)} is not a URL such as https://portal.example.com` } });
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `${what} ${JSON.stringify(value)} must be an http or https URL` } });
  }
  return url.origin;
}

/** The SHA-256 of a bearer token, as stored. */
export function hashBearerToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/**
 * The paired origins of one agent home, in `<home>/pairings.json` (mode
 * 0600, the home directory 0700). Read on every check, so `ukey agent
 * unpair` takes effect on a running agent at once; written whole to a
 * temporary file and renamed, so a crash never leaves half a file.
 */
export class PairingFile {
  readonly path: string;

  constructor(readonly home: string) {
    this.path = join(home, "pairings.json");
  }

  /**
   * The stored pairings; none when the file does not exist.
   * @throws UkeyError CONFIG_INVALID when the file is not ours (it is never overwritten then).
   */
  list(): StoredPairing[] {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new UkeyError("FILE_UNREADABLE", { params: { path: this.path }, cause: e });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UkeyError("CONFIG_INVALID", { params: { reason: `${this.path} is not valid JSON; remove it to unpair every site` } });
    }
    const r = pairingsFileSchema.safeParse(parsed);
    if (!r.success) throw new UkeyError("CONFIG_INVALID", { params: { reason: `${this.path}: ${r.error.issues[0]?.message ?? "unexpected content"}; remove it to unpair every site` } });
    return r.data.pairings;
  }

  /** Stores a new bearer token for `origin` (an origin may hold several: one per browser). */
  add(origin: string, token: string, now: Date): StoredPairing {
    const p: StoredPairing = { id: randomUUID(), origin, tokenSha256: hashBearerToken(token), createdAt: now.toISOString() };
    this.write([...this.list(), p]);
    return p;
  }

  /** Removes every pairing of `origin`; returns how many were removed. */
  remove(origin: string): number {
    const all = this.list();
    const kept = all.filter((p) => p.origin !== origin);
    if (kept.length !== all.length) this.write(kept);
    return all.length - kept.length;
  }

  /** The pairing a bearer token belongs to, if it was issued to `origin`. */
  find(origin: string, token: string): StoredPairing | undefined {
    const presented = Buffer.from(hashBearerToken(token), "hex");
    let found: StoredPairing | undefined;
    // Every entry is compared, each in constant time, so the answer's timing tells nothing.
    for (const p of this.list()) {
      if (timingSafeEqual(presented, Buffer.from(p.tokenSha256, "hex")) && p.origin === origin) found = p;
    }
    return found;
  }

  private write(pairings: StoredPairing[]): void {
    mkdirSync(this.home, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ version: 1, pairings }, null, 2) + "\n", { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.path);
  }
}

interface PendingPairing {
  id: string;
  origin: string;
  code: string;
  expiresAt: number;
}

/** Wrong pairing codes one origin may send in 24 hours, whatever the restarts: after them pairing pauses until the day is over. */
export const pairingMaxWrongPerDay = 20;
const DAY_MS = 24 * 3_600_000;

/** One origin's wrong pairing codes: those of its current pairing, and those of its current 24-hour window. */
interface OriginAttempts {
  /** Wrong codes since its current pairing began (a new pairing started before that one expired keeps them). */
  tries: number;
  /** When the current pairing's codes stop counting (its expiry), epoch ms. */
  triesUntil: number;
  wrongToday: number;
  /** When the current 24-hour window began, epoch ms. */
  dayStart: number;
}

const attemptsFileSchema = z.strictObject({
  version: z.literal(1),
  origins: z.record(z.string().min(1), z.strictObject({
    tries: z.number().int().min(0),
    triesUntil: z.number().int().min(0),
    wrongToday: z.number().int().min(0),
    dayStart: z.number().int().min(0),
  })),
});

/**
 * Wrong pairing codes per origin, in `<home>/pairing-attempts.json` (mode
 * 0600, written whole to a temporary file and renamed), so that restarting
 * the agent gives a page no fresh set of guesses. A file that is not ours
 * is never overwritten and stops pairing (fail closed) until it is removed.
 */
export class PairingAttemptFile {
  readonly path: string;

  constructor(readonly home: string) {
    this.path = join(home, "pairing-attempts.json");
  }

  /**
   * Every origin's attempts; none when the file does not exist.
   * @throws UkeyError FILE_UNREADABLE, CONFIG_INVALID when the file is not ours.
   */
  read(): Record<string, OriginAttempts> {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return {};
      throw new UkeyError("FILE_UNREADABLE", { params: { path: this.path }, cause: e });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const r = attemptsFileSchema.safeParse(parsed);
    if (!r.success) throw new UkeyError("CONFIG_INVALID", { params: { reason: `${this.path} is not a pairing attempts file; remove it to allow pairing again` } });
    return r.data.origins;
  }

  /** Replaces the file with `origins`, dropping entries that no longer count at `now`. */
  write(origins: Record<string, OriginAttempts>, now: number): void {
    const live = Object.fromEntries(Object.entries(origins).filter(([, a]) => a.triesUntil > now || (a.wrongToday > 0 && now - a.dayStart < DAY_MS)));
    mkdirSync(this.home, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ version: 1, origins: live }, null, 2) + "\n", { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.path);
  }
}

/**
 * Pairings being confirmed: a 6-digit code (crypto.randomInt) shown only
 * by the agent, valid for two minutes and five tries, compared in constant
 * time. Starting again while a pairing of the origin is open replaces its
 * code but keeps its count of wrong codes, and after five wrong codes the
 * origin cannot start another until that pairing's two minutes are over:
 * a page gets at most five guesses in two minutes, never a fresh set by
 * starting over. An origin gets at most `pairingMaxWrongPerDay` wrong codes
 * in 24 hours. The counts are kept in PairingAttemptFile, so a restart of
 * the agent resets neither; the codes themselves live only in memory (a
 * restart ends every pairing in progress).
 */
export class PendingPairings {
  private readonly pending = new Map<string, PendingPairing>();

  constructor(private readonly now: () => Date, private readonly attempts: PairingAttemptFile, private readonly maxWrongPerDay = pairingMaxWrongPerDay) {}

  /**
   * Starts a pairing; the caller shows `code` to the holder, never to the page.
   * @throws UkeyError PAIRING_ENDED while a pairing of the origin that ended after five wrong codes has not expired,
   *   PAIRING_ATTEMPTS_EXHAUSTED when the origin's wrong codes of the day are used up.
   */
  start(origin: string): { id: string; code: string; expiresAt: Date } {
    const t = this.now().getTime();
    this.sweep(t);
    const all = this.attempts.read();
    const a = this.current(all[origin], t);
    this.refuseWhenExhausted(origin, a, t);
    if (a.tries >= pairingMaxTries) {
      throw new UkeyError("PAIRING_ENDED", { detail: `a new pairing can start after ${new Date(a.triesUntil).toISOString()}` });
    }
    for (const [id, p] of this.pending) if (p.origin === origin) this.pending.delete(id);
    const p: PendingPairing = {
      id: randomBytes(16).toString("base64url"),
      origin,
      code: String(randomInt(0, 1_000_000)).padStart(6, "0"),
      expiresAt: t + pairingLifetimeMs,
    };
    this.pending.set(p.id, p);
    all[origin] = { ...a, triesUntil: p.expiresAt };
    this.attempts.write(all, t);
    return { id: p.id, code: p.code, expiresAt: new Date(p.expiresAt) };
  }

  /**
   * Checks a typed code. Returns the origin on success (the pairing ends).
   * @throws UkeyError PAIRING_EXPIRED (unknown, expired, or started by another origin),
   *   PAIRING_CODE_INVALID (wrong, with the tries left), PAIRING_ENDED (the fifth wrong code, and every try after it),
   *   PAIRING_ATTEMPTS_EXHAUSTED (the origin's wrong codes of the day are used up).
   */
  confirm(id: string, origin: string, code: string): string {
    const t = this.now().getTime();
    const p = this.pending.get(id);
    if (!p || p.origin !== origin) throw new UkeyError("PAIRING_EXPIRED");
    if (t > p.expiresAt) {
      this.pending.delete(id);
      throw new UkeyError("PAIRING_EXPIRED");
    }
    const all = this.attempts.read();
    const a = this.current(all[origin], t);
    if (a.tries >= pairingMaxTries) throw new UkeyError("PAIRING_ENDED");
    this.refuseWhenExhausted(origin, a, t);
    const typed = Buffer.from(code, "utf8");
    const expected = Buffer.from(p.code, "utf8");
    if (typed.length === expected.length && timingSafeEqual(typed, expected)) {
      this.pending.delete(id);
      all[origin] = { ...a, tries: 0, triesUntil: 0 };
      this.attempts.write(all, t);
      return p.origin;
    }
    const after = { ...a, tries: a.tries + 1, wrongToday: a.wrongToday + 1 };
    all[origin] = after;
    this.attempts.write(all, t);
    if (after.tries >= pairingMaxTries) throw new UkeyError("PAIRING_ENDED", { detail: "pairing ended after 5 wrong codes" });
    throw new UkeyError("PAIRING_CODE_INVALID", { params: { triesLeft: pairingMaxTries - after.tries } });
  }

  /** An origin's attempts as they count at `t`: a pairing's tries end with it, a day's wrong codes with the day. */
  private current(a: OriginAttempts | undefined, t: number): OriginAttempts {
    const x = a ?? { tries: 0, triesUntil: 0, wrongToday: 0, dayStart: t };
    return {
      tries: t > x.triesUntil ? 0 : x.tries,
      triesUntil: x.triesUntil,
      ...(t - x.dayStart >= DAY_MS ? { wrongToday: 0, dayStart: t } : { wrongToday: x.wrongToday, dayStart: x.dayStart }),
    };
  }

  private refuseWhenExhausted(origin: string, a: OriginAttempts, t: number): void {
    if (a.wrongToday < this.maxWrongPerDay) return;
    const until = a.dayStart + DAY_MS;
    throw new UkeyError("PAIRING_ATTEMPTS_EXHAUSTED", { params: { origin, until: new Date(until).toISOString(), retryAfterSeconds: Math.ceil((until - t) / 1000) } });
  }

  private sweep(t: number): void {
    for (const [id, p] of this.pending) if (t > p.expiresAt) this.pending.delete(id);
  }
}
