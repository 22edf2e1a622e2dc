import { z } from "zod";
import { UkeyError } from "./errors.js";

/** A text in zh-CN and en. */
export interface LocalisedText {
  zh: string;
  en: string;
}

/**
 * What an entry matches on. Every field given must match (AND); at least
 * one is required. Comparison rules:
 * - serialPrefix: the token's serial, normalised (NFKC, upper case, spaces
 *   and hyphens removed, because printed numbers are often grouped), starts
 *   with the prefix, itself compared in upper case.
 * - serialPattern: a regular expression (JavaScript syntax, case-insensitive)
 *   tested against the normalised serial; anchor it yourself.
 * - manufacturerId / model: the PKCS#11 CK_TOKEN_INFO field, trimmed of its
 *   blank padding, starts with the value, ignoring case ("Feitian" matches
 *   "FEITIAN Technologies Co., Ltd.").
 */
export interface KeyVendorMatchRule {
  serialPrefix?: string;
  serialPattern?: string;
  manufacturerId?: string;
  model?: string;
}

/** One row of the key vendor table. */
export interface KeyVendorEntry {
  /** Stable identifier; operator entries with the same id replace the default. */
  id: string;
  match: KeyVendorMatchRule;
  vendor: LocalisedText;
  /** Product generation where the institution numbers them (seed 000: 3 or 4). */
  generation?: number;
  /** What the holder would call this key, e.g. "三代音频型 UKey". */
  product?: LocalisedText;
  /** Advice shown to the holder for this key, in order. */
  guidance?: LocalisedText[];
  /**
   * The key cannot be renewed or downloaded onto online (seed 000: "3rd
   * generation and newer only"): why, in the holder's words. The agent
   * refuses such a key with TOKEN_UNSUPPORTED before it asks for the PIN.
   */
  unsupported?: LocalisedText;
  /**
   * How long the key itself waits for its OK button before it cancels, in
   * seconds, where the vendor documents it. The agent tells the holder
   * this while it waits; without it the agent says only that the key
   * cancels after a while.
   */
  confirmationTimeoutSeconds?: number;
  /** PKCS#11 vendor-defined SM2 values of this key's module (see Pkcs11Sm2Mechanisms). */
  pkcs11Sm2?: Pkcs11Sm2Mechanisms;
}

/**
 * The vendor-defined PKCS#11 values under which a module offers SM2, which
 * PKCS#11 2.40 and 3.0 do not standardise (3.1 does not either): each is
 * CKM_VENDOR_DEFINED (0x80000000) or CKK_VENDOR_DEFINED plus a number the
 * vendor chose. Written in configuration as integers or "0x..." strings.
 * Public values are listed in docs/key-vendors.md with their source.
 */
export interface Pkcs11Sm2Mechanisms {
  /** CKA_KEY_TYPE of SM2 keys. */
  keyType: number;
  /** The key pair generation mechanism (C_GenerateKeyPair). */
  keyPairGen: number;
  /** SM2 signature over the SM3 digest of Z || M, computed by the module (SM3withSM2). */
  sm3WithSm2: number;
  /** Raw SM2 signature over a digest the caller computed, where the module has one. */
  sm2?: number;
  /**
   * What the agent hands the module to sign (default "message"):
   * - "message": the message itself, with the mechanism `sm3WithSm2` and
   *   the distinguishing ID "1234567812345678" (its 16 octets) as the
   *   mechanism parameter; the module computes Z and SM3(Z || M);
   * - "digest": e = SM3(Z || M), computed by the agent with the standard
   *   ID and the key's public point, signed with the mechanism `sm2`
   *   (which must then be given).
   */
  signs?: "message" | "digest";
  /** How the module returns the signature (default "raw"): r || s (64 octets), or a DER SEQUENCE { r, s } ("der", X9.62). */
  signatureFormat?: "raw" | "der";
  /** Whether key generation names the curve with CKA_EC_PARAMS (the DER OID 1.2.156.10197.1.301); default true. */
  ecParams?: boolean;
}

/** A key vendor table, as parsed from configuration. */
export type KeyVendorTable = readonly KeyVendorEntry[];

/** What the agent knows of a token. `label` is accepted but never matched: holders and initialisation set it freely. */
export interface TokenIdentity {
  serial?: string;
  manufacturerId?: string;
  model?: string;
  label?: string;
}

/** The entry that won for a token, and which of its fields matched. */
export interface KeyVendorMatch {
  id: string;
  vendor: LocalisedText;
  generation?: number;
  product?: LocalisedText;
  guidance: LocalisedText[];
  unsupported?: LocalisedText;
  confirmationTimeoutSeconds?: number;
  pkcs11Sm2?: Pkcs11Sm2Mechanisms;
  matchedOn: (keyof KeyVendorMatchRule)[];
}

const t = (zh: string, en: string): LocalisedText => ({ zh, en });

// Seed 000, 3.1: both generations are for the phone over audio or
// Bluetooth, and for the computer only over the USB cable.
const usbOnly = t("更新证书请用数据线把 UKey 连接到电脑；耳机（音频）和蓝牙方式只用于手机银行。",
  "Renew with the UKey connected to the computer by its USB cable; the audio and Bluetooth modes are for the phone only.");
const gen3Compat = t("电脑不识别时：按住 UKey 上的 C 键不松开，同时插入 USB 口，在弹出的提示中点“是”（兼容模式）。",
  "If the computer does not recognise it: hold the C key on the UKey while inserting it into the USB port, then answer Yes to the prompt (compatibility mode).");
const gen4SwitchedOff = t("请先长按电源键关机，在关机状态下连接电脑；开机后再连接会进入蓝牙模式，该模式只能连接手机。",
  "Switch the UKey off first (hold the power key) and connect it switched off; switched on, it enters Bluetooth mode, which only a phone can use.");
const gen4Compat = t("电脑不识别时：按住 UKey 上的“上”键（上三角）不松开，同时插入 USB 口，在弹出的提示中点“是”（兼容模式）。",
  "If the computer does not recognise it: hold the up key on the UKey while inserting it into the USB port, then answer Yes to the prompt (compatibility mode).");
const pressOk = t("需要确认时，请在 UKey 上按 OK 键。", "When asked to confirm, press OK on the UKey.");
const feitianPinOnKey = t("这款 UKey 确认时可能要求在 UKey 上再次输入 PIN，然后按 OK 键。", "This UKey may ask for the PIN again on the key itself before you press OK.");

const tendyron = t("天地融", "Tendyron");
const feitian = t("飞天诚信", "Feitian");

/**
 * The default table: seed 000's printed serial prefixes, seed 001's
 * two-digit vendor codes, and PKCS#11 manufacturer names. Operators extend
 * or override it with the server's configuration key `keyVendors`
 * (mergeKeyVendorTables); see docs/key-vendors.md.
 *
 * Seed 001's codes are written as all-digit patterns rather than bare
 * prefixes so that a serial such as "21AB..." of another vendor is not
 * taken for Watchdata. The manufacturer prefixes are the vendors' company
 * names; drivers differ in what they report, so operators check theirs
 * with `pkcs11-tool -L` and add entries.
 */
export const defaultKeyVendors: KeyVendorTable = [
  // ---- seed 000: printed serial prefixes, vendor and generation ----
  { id: "pf16ta-tendyron-gen3-audio", match: { serialPrefix: "PF16TA" }, vendor: tendyron, generation: 3,
    product: t("三代音频型 UKey（带耳机插头）", "3rd-generation audio UKey (with headphone plug)"),
    guidance: [usbOnly, gen3Compat, pressOk] },
  { id: "pf16fa-feitian-gen3-lcd", match: { serialPrefix: "PF16FA" }, vendor: feitian, generation: 3,
    product: t("三代液晶型 UKey（带耳机插头）", "3rd-generation LCD UKey (with headphone plug)"),
    guidance: [usbOnly, gen3Compat, pressOk, feitianPinOnKey] },
  { id: "pf20ta-tendyron-gen4-bluetooth", match: { serialPrefix: "PF20TA" }, vendor: tendyron, generation: 4,
    product: t("四代蓝牙型 UKey", "4th-generation Bluetooth UKey"),
    guidance: [gen4SwitchedOff, usbOnly, gen4Compat, pressOk] },
  { id: "pf20fa-feitian-gen4-bluetooth", match: { serialPrefix: "PF20FA" }, vendor: feitian, generation: 4,
    product: t("四代蓝牙型 UKey", "4th-generation Bluetooth UKey"),
    guidance: [gen4SwitchedOff, usbOnly, gen4Compat, pressOk, feitianPinOnKey] },

  // ---- seed 001: the first two digits of the number printed on the key ----
  { id: "netbank-11-gd", match: { serialPattern: "^11\\d+$" }, vendor: t("捷德", "Giesecke+Devrient (G+D)"),
    product: t("捷德网银盾", "G+D net-banking shield") },
  { id: "netbank-21-watchdata", match: { serialPattern: "^21\\d+$" }, vendor: t("握奇", "Watchdata"),
    product: t("握奇网银盾", "Watchdata net-banking shield") },
  { id: "netbank-31-huada", match: { serialPattern: "^31\\d+$" }, vendor: t("华大", "Huada"),
    product: t("华大网银盾", "Huada net-banking shield") },
  { id: "netbank-41-daming", match: { serialPattern: "^41\\d+$" }, vendor: t("大明", "Daming"),
    product: t("大明网银盾", "Daming net-banking shield") },

  // ---- PKCS#11 manufacturerID (and model) ----
  { id: "pkcs11-feitian", match: { manufacturerId: "Feitian" }, vendor: feitian },
  // OpenSC presents Feitian's ePass keys under Feitian's EnterSafe brand.
  { id: "pkcs11-entersafe", match: { manufacturerId: "EnterSafe" }, vendor: feitian },
  { id: "pkcs11-tendyron", match: { manufacturerId: "Tendyron" }, vendor: tendyron },
  { id: "pkcs11-watchdata", match: { manufacturerId: "Watchdata" }, vendor: t("握奇", "Watchdata") },
  { id: "pkcs11-longmai", match: { manufacturerId: "Longmai" }, vendor: t("龙脉", "Longmai") },
  { id: "pkcs11-haitai", match: { manufacturerId: "HaiTai" }, vendor: t("海泰方圆", "HaiTai") },
  { id: "pkcs11-giesecke", match: { manufacturerId: "Giesecke" }, vendor: t("捷德", "Giesecke+Devrient (G+D)") },
  // The test token: SoftHSM2 reports exactly these two strings.
  { id: "pkcs11-softhsm2", match: { manufacturerId: "SoftHSM project", model: "SoftHSM v2" },
    vendor: t("SoftHSM（测试用软件令牌）", "SoftHSM (software token for tests)"),
    product: t("SoftHSM 2 软件令牌", "SoftHSM 2 software token"),
    guidance: [t("这是用于测试的软件令牌，不是硬件 UKey。", "This is a software token for tests, not a hardware UKey.")] },
];

const localisedTextSchema = z.strictObject({
  zh: z.string().trim().min(1),
  en: z.string().trim().min(1),
});

const matchRuleSchema = z.strictObject({
  serialPrefix: z.string().trim().min(1).max(64).optional(),
  serialPattern: z.string().min(1).max(200).optional()
    .refine((p) => p === undefined || compiles(p), { message: "not a valid regular expression" }),
  manufacturerId: z.string().trim().min(1).max(32).optional(),
  model: z.string().trim().min(1).max(16).optional(),
}).refine((m) => Object.values(m).some((v) => v !== undefined), {
  message: "give at least one of serialPrefix, serialPattern, manufacturerId, model",
});

/** A CK_ULONG as configuration writes it: an integer, or a "0x..." string (vendor values are read in hex). */
const ckUlongSchema = z.union([
  z.number().int().min(0).max(0xffffffff),
  z.string().regex(/^0x[0-9a-fA-F]{1,8}$/, "an integer or a \"0x...\" hex string of at most 8 digits").transform((h) => Number.parseInt(h.slice(2), 16)),
]);

/** Vendor-defined values lie at or above CKM_VENDOR_DEFINED / CKK_VENDOR_DEFINED (0x80000000): anything lower is a standard value, not SM2. */
const vendorDefined = ckUlongSchema.refine((v) => v >= 0x80000000, { message: "must be vendor-defined: at least 0x80000000 (CKM_VENDOR_DEFINED / CKK_VENDOR_DEFINED)" });

const pkcs11Sm2Schema = z.strictObject({
  keyType: vendorDefined,
  keyPairGen: vendorDefined,
  sm3WithSm2: vendorDefined,
  sm2: vendorDefined.optional(),
  signs: z.enum(["message", "digest"]).optional(),
  signatureFormat: z.enum(["raw", "der"]).optional(),
  ecParams: z.boolean().optional(),
}).refine((v) => v.signs !== "digest" || v.sm2 !== undefined, {
  message: "signs \"digest\" needs the mechanism that signs a digest: give sm2",
  path: ["sm2"],
});

const entrySchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "lower-case letters, digits and hyphens"),
  match: matchRuleSchema,
  vendor: localisedTextSchema,
  generation: z.number().int().min(1).max(99).optional(),
  product: localisedTextSchema.optional(),
  guidance: z.array(localisedTextSchema).optional(),
  unsupported: localisedTextSchema.optional(),
  confirmationTimeoutSeconds: z.number().int().min(1).max(600).optional(),
  pkcs11Sm2: pkcs11Sm2Schema.optional(),
});

/**
 * The zod schema of a key vendor table (the configuration key `keyVendors`).
 * Strict: unknown keys anywhere are rejected, so a misspelt field
 * ("serialPrefx") is an error instead of a rule that silently matches
 * nothing. ids must be unique within one table.
 */
export const keyVendorTableSchema = z.array(entrySchema).superRefine((entries, ctx) => {
  const seen = new Map<string, number>();
  entries.forEach((e, i) => {
    const first = seen.get(e.id);
    if (first !== undefined) ctx.addIssue({ code: "custom", path: [i, "id"], message: `duplicate id "${e.id}" (also at [${first}])` });
    else seen.set(e.id, i);
  });
});

function compiles(pattern: string): boolean {
  try {
    new RegExp(pattern, "iu");
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses and validates a key vendor table from configuration.
 * `name` is how the message names the table's location (default
 * "keyVendors", the configuration key).
 * Throws UkeyError KEY_VENDOR_TABLE_INVALID whose reason names the path of
 * the first wrong entry, e.g. `keyVendors[2].match: Unrecognized key: "serialPrefx"`;
 * when there are several problems, its detail lists them all.
 * Returns a frozen table.
 */
export function parseKeyVendorTable(input: unknown, name = "keyVendors"): KeyVendorTable {
  const r = keyVendorTableSchema.safeParse(input);
  if (!r.success) {
    const all = r.error.issues.map((i) => `${name}${formatPath(i.path)}: ${i.message}`);
    // The first problem is the message; operators fixing a long table see the rest in the detail.
    const options: { params: { reason: string }; detail?: string } = { params: { reason: all[0]! } };
    if (all.length > 1) options.detail = all.join("; ");
    throw new UkeyError("KEY_VENDOR_TABLE_INVALID", options);
  }
  return deepFreeze(r.data as KeyVendorEntry[]);
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/**
 * The defaults with the operator's entries applied: an operator entry with
 * the id of a default replaces it in place; any other is appended, so it
 * wins ties against the defaults (see detectKeyVendor). Neither input is
 * changed or validated: parse operator input with parseKeyVendorTable first.
 */
export function mergeKeyVendorTables(defaults: KeyVendorTable, operatorEntries: KeyVendorTable): KeyVendorTable {
  const out = [...defaults];
  for (const entry of operatorEntries) {
    const i = out.findIndex((d) => d.id === entry.id);
    if (i >= 0) out[i] = entry;
    else out.push(entry);
  }
  return out;
}

/** A serial as printed or as PKCS#11 reports it, in the one form rules compare. */
export function normaliseTokenSerial(serial: string): string {
  return serial.normalize("NFKC").toUpperCase().replace(/[\s-]+/g, "");
}

/**
 * Finds the vendor, generation and holder guidance of a token.
 *
 * The most specific matching entry wins:
 * 1. the entry that names more match fields (manufacturerId + model beats
 *    manufacturerId alone);
 * 2. among equals, a serial rule beats a model rule beats a manufacturerId
 *    rule, because the printed number tells vendor and generation while the
 *    manufacturer tells only the vendor; a longer serialPrefix beats a
 *    shorter one, and any prefix beats a serialPattern;
 * 3. among entries still equal, the later in the table, so an operator's
 *    appended entry wins a tie with a default.
 *
 * Returns undefined when nothing matches. Never throws (patterns are
 * checked by parseKeyVendorTable; one that does not compile never matches).
 */
export function detectKeyVendor(token: TokenIdentity, table: KeyVendorTable = defaultKeyVendors): KeyVendorMatch | undefined {
  const serial = token.serial === undefined ? undefined : normaliseTokenSerial(token.serial);
  const manufacturer = token.manufacturerId?.trim().toLowerCase();
  const model = token.model?.trim().toLowerCase();
  let best: { entry: KeyVendorEntry; key: number[]; on: (keyof KeyVendorMatchRule)[] } | undefined;

  table.forEach((entry, index) => {
    const m = entry.match;
    const on: (keyof KeyVendorMatchRule)[] = [];
    if (m.serialPrefix !== undefined) {
      if (!serial?.startsWith(normaliseTokenSerial(m.serialPrefix))) return;
      on.push("serialPrefix");
    }
    if (m.serialPattern !== undefined) {
      if (serial === undefined || !safeTest(m.serialPattern, serial)) return;
      on.push("serialPattern");
    }
    if (m.manufacturerId !== undefined) {
      if (!manufacturer?.startsWith(m.manufacturerId.trim().toLowerCase())) return;
      on.push("manufacturerId");
    }
    if (m.model !== undefined) {
      if (!model?.startsWith(m.model.trim().toLowerCase())) return;
      on.push("model");
    }
    if (on.length === 0) return;
    const hasSerial = m.serialPrefix !== undefined || m.serialPattern !== undefined;
    const key = [
      on.length,
      hasSerial ? 1 : 0,
      m.model !== undefined ? 1 : 0,
      m.serialPrefix !== undefined ? normaliseTokenSerial(m.serialPrefix).length : 0,
      index,
    ];
    if (!best || compareKeys(key, best.key) > 0) best = { entry, key, on };
  });

  if (!best) return undefined;
  const { entry, on } = best;
  const result: KeyVendorMatch = { id: entry.id, vendor: entry.vendor, guidance: entry.guidance ?? [], matchedOn: on };
  if (entry.generation !== undefined) result.generation = entry.generation;
  if (entry.product !== undefined) result.product = entry.product;
  if (entry.unsupported !== undefined) result.unsupported = entry.unsupported;
  if (entry.confirmationTimeoutSeconds !== undefined) result.confirmationTimeoutSeconds = entry.confirmationTimeoutSeconds;
  if (entry.pkcs11Sm2 !== undefined) result.pkcs11Sm2 = entry.pkcs11Sm2;
  return result;
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

function safeTest(pattern: string, s: string): boolean {
  try {
    return new RegExp(pattern, "iu").test(s);
  } catch {
    return false;
  }
}
