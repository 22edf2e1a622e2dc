import { UkeyError, isUkeyError } from "@ukey/policy";

/**
 * The return codes of GM/T 0016-2012 (SKF), appendix A. A vendor library
 * returns one of these ULONGs from every function; the agent never shows
 * them to a holder: skfError maps each to a catalogue code.
 */
export const SAR = {
  OK: 0x00000000,
  FAIL: 0x0a000001,
  UNKNOWNERR: 0x0a000002,
  NOTSUPPORTYETERR: 0x0a000003,
  FILEERR: 0x0a000004,
  INVALIDHANDLEERR: 0x0a000005,
  INVALIDPARAMERR: 0x0a000006,
  READFILEERR: 0x0a000007,
  WRITEFILEERR: 0x0a000008,
  NAMELENERR: 0x0a000009,
  KEYUSAGEERR: 0x0a00000a,
  MODULUSLENERR: 0x0a00000b,
  NOTINITIALIZEERR: 0x0a00000c,
  OBJERR: 0x0a00000d,
  MEMORYERR: 0x0a00000e,
  TIMEOUTERR: 0x0a00000f,
  INDATALENERR: 0x0a000010,
  INDATAERR: 0x0a000011,
  GENRANDERR: 0x0a000012,
  HASHOBJERR: 0x0a000013,
  HASHERR: 0x0a000014,
  GENRSAKEYERR: 0x0a000015,
  RSAMODULUSLENERR: 0x0a000016,
  CSPIMPRTPUBKEYERR: 0x0a000017,
  RSAENCERR: 0x0a000018,
  RSADECERR: 0x0a000019,
  HASHNOTEQUALERR: 0x0a00001a,
  KEYNOTFOUNTERR: 0x0a00001b,
  CERTNOTFOUNTERR: 0x0a00001c,
  NOTEXPORTERR: 0x0a00001d,
  DECRYPTPADERR: 0x0a00001e,
  MACLENERR: 0x0a00001f,
  BUFFER_TOO_SMALL: 0x0a000020,
  KEYINFOTYPEERR: 0x0a000021,
  NOT_EVENTERR: 0x0a000022,
  DEVICE_REMOVED: 0x0a000023,
  PIN_INCORRECT: 0x0a000024,
  PIN_LOCKED: 0x0a000025,
  PIN_INVALID: 0x0a000026,
  PIN_LEN_RANGE: 0x0a000027,
  USER_ALREADY_LOGGED_IN: 0x0a000028,
  USER_PIN_NOT_INITIALIZED: 0x0a000029,
  USER_TYPE_INVALID: 0x0a00002a,
  APPLICATION_NAME_INVALID: 0x0a00002b,
  APPLICATION_EXISTS: 0x0a00002c,
  USER_NOT_LOGGED_IN: 0x0a00002d,
  APPLICATION_NOT_EXISTS: 0x0a00002e,
  FILE_ALREADY_EXIST: 0x0a00002f,
  NO_ROOM: 0x0a000030,
  FILE_NOT_EXIST: 0x0a000031,
  REACH_MAX_CONTAINER_COUNT: 0x0a000032,
  /**
   * The holder refused on the key's own button or PIN pad. Not in GM/T
   * 0016-2012's appendix A; vendors' libraries (and skf-softkey) return
   * 0x0B000011 for it.
   */
  USER_CANCEL: 0x0b000011,
} as const;

const names = new Map<number, string>(Object.entries(SAR).map(([k, v]) => [v, `SAR_${k}`]));

/** "SAR_PIN_INCORRECT (0x0A000024)", or the bare hex of a vendor's own code: for details and logs, never for holders. */
export function sarName(code: number): string {
  const hex = `0x${(code >>> 0).toString(16).toUpperCase().padStart(8, "0")}`;
  const name = names.get(code >>> 0);
  return name ? `${name} (${hex})` : hex;
}

/** A failed SKF call: the function, its return code. Thrown by the binding, turned into a UkeyError by skfError. */
export class SkfCallError extends Error {
  readonly code: number;
  readonly fn: string;
  constructor(fn: string, code: number) {
    super(`${fn} returned ${sarName(code)}`);
    this.name = "SkfCallError";
    this.fn = fn;
    this.code = code >>> 0;
  }
}

export function sarOf(e: unknown): number | undefined {
  return e instanceof SkfCallError ? e.code : undefined;
}

/** What the failed call was doing, which decides a code's meaning: a PIN that is verified, a PIN that is set, anything else. */
export type SkfContext =
  | { kind: "verify-pin"; pin: "user" | "admin"; triesLeft?: number }
  | { kind: "set-pin" }
  | { kind: "confirm" }
  | { kind: "keygen" }
  | { kind: "other"; id?: string };

const removed = new Set<number>([SAR.DEVICE_REMOVED, SAR.INVALIDHANDLEERR]);
const full = new Set<number>([SAR.NO_ROOM, SAR.REACH_MAX_CONTAINER_COUNT, SAR.MEMORYERR]);

/**
 * The catalogue error of a failed SKF call `op` ("sign", "import the
 * certificate" ...), by return code and context:
 * - SAR_DEVICE_REMOVED, SAR_INVALIDHANDLEERR: TOKEN_REMOVED_DURING_OPERATION;
 * - SAR_PIN_LOCKED, or SAR_PIN_INCORRECT with no tries left: TOKEN_PIN_LOCKED;
 * - SAR_PIN_INCORRECT (and, while verifying, SAR_PIN_INVALID / SAR_PIN_LEN_RANGE): TOKEN_PIN_INCORRECT with params.triesLeft when known;
 * - SAR_PIN_INVALID, SAR_PIN_LEN_RANGE while setting a PIN: PIN_TOO_WEAK;
 * - SAR_NO_ROOM, SAR_REACH_MAX_CONTAINER_COUNT, SAR_MEMORYERR: TOKEN_STORAGE_FULL;
 * - SAR_TIMEOUTERR while the key waits for its button: TOKEN_CONFIRMATION_TIMEOUT;
 * - SAR_USER_CANCEL (the button refused): TOKEN_CONFIRMATION_CANCELLED;
 * - SAR_KEYNOTFOUNTERR: TOKEN_KEY_NOT_FOUND;
 * - SAR_APPLICATION_NOT_EXISTS, SAR_USER_PIN_NOT_INITIALIZED: TOKEN_NOT_INITIALISED;
 * - anything else: TOKEN_KEYGEN_FAILED while making a key or request, else TOKEN_OPERATION_FAILED.
 * The SKF name and number go to the error's detail (logs), not to its message.
 */
export function skfError(e: unknown, op: string, ctx: SkfContext = { kind: "other" }): UkeyError {
  if (isUkeyError(e)) return e;
  const code = sarOf(e);
  const detail = `${op}: ${e instanceof Error ? e.message : String(e)}`;
  const cause = e;
  if (code === undefined) return new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: op }, detail, cause });
  if (removed.has(code)) return new UkeyError("TOKEN_REMOVED_DURING_OPERATION", { detail, cause });
  const pinWho = ctx.kind === "verify-pin" ? ctx.pin : "user";
  if (code === SAR.PIN_LOCKED) return new UkeyError("TOKEN_PIN_LOCKED", { params: { pin: pinWho }, detail, cause });
  if (code === SAR.PIN_INCORRECT || (ctx.kind === "verify-pin" && (code === SAR.PIN_INVALID || code === SAR.PIN_LEN_RANGE))) {
    const triesLeft = ctx.kind === "verify-pin" ? ctx.triesLeft : undefined;
    if (triesLeft === 0) return new UkeyError("TOKEN_PIN_LOCKED", { params: { pin: pinWho }, detail, cause });
    const params: Record<string, string | number> = { pin: pinWho };
    if (triesLeft !== undefined) params.triesLeft = triesLeft;
    return new UkeyError("TOKEN_PIN_INCORRECT", { params, detail, cause });
  }
  if (code === SAR.PIN_INVALID || code === SAR.PIN_LEN_RANGE) return new UkeyError("PIN_TOO_WEAK", { detail, cause });
  if (full.has(code)) return new UkeyError("TOKEN_STORAGE_FULL", { detail, cause });
  if (code === SAR.TIMEOUTERR && (ctx.kind === "confirm" || ctx.kind === "keygen")) {
    return new UkeyError("TOKEN_CONFIRMATION_TIMEOUT", { detail, cause });
  }
  if (code === SAR.USER_CANCEL) return new UkeyError("TOKEN_CONFIRMATION_CANCELLED", { detail, cause });
  if (code === SAR.KEYNOTFOUNTERR) return new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id: ctx.kind === "other" ? ctx.id ?? "" : "" }, detail, cause });
  if (code === SAR.APPLICATION_NOT_EXISTS || code === SAR.USER_PIN_NOT_INITIALIZED) {
    return new UkeyError("TOKEN_NOT_INITIALISED", { detail, cause });
  }
  if (ctx.kind === "keygen") return new UkeyError("TOKEN_KEYGEN_FAILED", { detail, cause });
  return new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: op }, detail, cause });
}
