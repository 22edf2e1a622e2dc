import { z } from "zod";
import { UkeyError } from "./errors.js";
import {
  defaultProfile, encryptionKeyUsages, extKeyUsageOids, keyAlgorithms, signingKeyUsages,
  type CertificateProfile, type KeyUsageName, type RenewalChannel, type RenewalWindow,
} from "./certificate-profile.js";
import { isPresetName, presetNames, profilePresets, type PresetName, type ProfilePreset } from "./profile-presets.js";

/** Where in the input a value is wrong: keys and array indexes from the root. */
export type ProfilePath = Array<string | number>;

/**
 * A profile that cannot be used. `code` is PROFILE_INVALID; `path` leads to
 * the wrong field (e.g. ["renewal", "windows", "web"], or [2, "id"] inside
 * parseProfiles) so that a configuration loader can point at its line.
 * params: `reason` ("renewal.windows.web: ...", the path included), `path`
 * (the same path joined with dots, "" for the root).
 */
export class ProfileInvalidError extends UkeyError {
  readonly path: ProfilePath;

  constructor(path: ProfilePath, message: string, code: "PROFILE_INVALID" | "PROFILE_PAIR_ALGORITHM_UNSUPPORTED" = "PROFILE_INVALID") {
    const where = path.length ? path.join(".") : "(profile)";
    super(code, { params: { reason: `${where}: ${message}`, path: path.join(".") } });
    this.name = "ProfileInvalidError";
    this.path = path;
  }
}

/** Deep-partial overrides of a preset; arrays, null and `validity` replace, other objects merge. */
export type ProfileOverrides = {
  [K in keyof ProfilePreset]?: K extends "renewal"
    ? { [R in keyof ProfilePreset["renewal"]]?: R extends "windows" ? Partial<Record<RenewalChannel, Partial<RenewalWindow> | null>> : ProfilePreset["renewal"][R] }
    : ProfilePreset[K];
};

/** What operators write: an id, optionally a preset, and overrides of any field. */
export type ProfileInput = { id: string; preset?: PresetName } & ProfileOverrides;

const keyUsageNames = ["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement"] as const satisfies readonly KeyUsageName[];
const dayCount = z.int().min(-36_500).max(36_500);

const windowSchema = z.strictObject({ opensDaysBefore: dayCount, closesDaysAfter: dayCount })
  .superRefine((w, ctx) => {
    if (w.opensDaysBefore + w.closesDaysAfter < 0) {
      ctx.addIssue({
        code: "custom",
        message: `the window opens (${w.opensDaysBefore} days before expiry) after it closes (${w.closesDaysAfter} days after expiry); opensDaysBefore + closesDaysAfter must be at least 0`,
      });
    }
  });

const uniqueList = <T extends z.ZodType>(item: T, what: string) => z.array(item).superRefine((a, ctx) => {
  const seen = new Set<unknown>();
  a.forEach((x, i) => {
    if (seen.has(x)) ctx.addIssue({ code: "custom", message: `${what} ${JSON.stringify(x)} is listed twice`, path: [i] });
    seen.add(x);
  });
});

/**
 * The strict schema of a complete profile: every field present, unknown
 * keys rejected at every level, windows that open after they close
 * rejected, key algorithm and key usage lists non-empty and without
 * duplicates, validity exactly one of `days` (1..36500) or `years` (1..100).
 */
export const certificateProfileSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "an id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
  name: z.strictObject({ "zh-CN": z.string().trim().min(1), en: z.string().trim().min(1) }),
  keyAlgorithms: uniqueList(z.enum(keyAlgorithms as [string, ...string[]]), "key algorithm").min(1, "at least one key algorithm is needed"),
  validity: z.strictObject({ days: z.int().min(1).max(36_500).optional(), years: z.int().min(1).max(100).optional() })
    .superRefine((v, ctx) => {
      if ((v.days === undefined) === (v.years === undefined)) ctx.addIssue({ code: "custom", message: "give exactly one of { \"days\": n } or { \"years\": n }" });
    }),
  validityAnchor: z.enum(["issuance", "carry-over"]),
  keyUsage: uniqueList(z.enum(keyUsageNames), "key usage").min(1, "at least one key usage is needed"),
  extKeyUsage: uniqueList(z.string().refine((s) => Object.hasOwn(extKeyUsageOids, s) || /^[0-2](\.(0|[1-9]\d*))+$/.test(s),
    { message: `an extended key usage is one of ${Object.keys(extKeyUsageOids).join(", ")} or a dotted OID` }), "extended key usage"),
  certificateKind: z.enum(["hardware", "file"]),
  verification: z.strictObject({ idNumber: z.boolean(), oneTimeCode: z.enum(["sms", "email"]).nullable() }),
  renewal: z.strictObject({
    windows: z.strictObject({ web: windowSchema.nullable(), mobile: windowSchema.nullable(), cli: windowSchema.nullable(), est: windowSchema.nullable() }),
    noticeDaysBefore: z.int().min(0).max(36_500),
    stepUp: z.strictObject({ afterDaysExpired: z.int().min(0).max(36_500) }).nullable(),
    loginWhenExpired: z.boolean(),
    onCompletion: z.enum(["revoke-superseded", "leave-to-expire"]),
    reminders: uniqueList(dayCount, "reminder threshold").max(12, "at most 12 reminder thresholds").optional(),
  }),
  certificates: z.strictObject({
    signing: z.strictObject({ keyUsage: uniqueList(z.enum(signingKeyUsages as [KeyUsageName, ...KeyUsageName[]], { message: `a signing certificate's key usage is one of ${signingKeyUsages.join(", ")}` }), "key usage").min(1, "at least one key usage is needed") }),
    encryption: z.strictObject({ keyUsage: uniqueList(z.enum(encryptionKeyUsages as [KeyUsageName, ...KeyUsageName[]], { message: `an encryption certificate's key usage is one of ${encryptionKeyUsages.join(", ")}` }), "key usage").min(1, "at least one key usage is needed") }),
  }).nullable().optional(),
  selfServiceRedownload: z.boolean().optional(),
});

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Overrides deep-merged over a base: plain objects merge key by key; arrays, null and scalars replace. */
function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return structuredClone(over);
  const out: Record<string, unknown> = structuredClone(base);
  for (const [k, v] of Object.entries(over)) out[k] = k in out ? deepMerge(out[k], v) : structuredClone(v);
  return out;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/**
 * A pair's encryption key is made by the key management centre and reaches
 * the key enveloped for the holder's signing key (docs/envelopes.md): a
 * GM/T 0016 envelope for an SM2 key, a CMS EnvelopedData for an RSA one. So a
 * pair profile's keys are all SM2 or all RSA (ECDSA keys cannot encipher),
 * and an RSA pair's encryption certificate has keyEncipherment (RSA keys do
 * not agree keys: RFC 4055) and at most dataEncipherment beside it.
 */
function checkPair(profile: CertificateProfile, at: ProfilePath): void {
  const sm2 = profile.keyAlgorithms.filter((a) => a === "sm2");
  const rsa = profile.keyAlgorithms.filter((a) => a.startsWith("rsa"));
  const other = profile.keyAlgorithms.filter((a) => a !== "sm2" && !a.startsWith("rsa"));
  if (other.length) {
    throw new ProfileInvalidError([...at, "keyAlgorithms"],
      `a signing + encryption certificate pair is issued for SM2 or RSA keys only (ECDSA keys cannot encipher); remove ${other.join(", ")} or drop "certificates"`,
      "PROFILE_PAIR_ALGORITHM_UNSUPPORTED");
  }
  if (sm2.length && rsa.length) {
    throw new ProfileInvalidError([...at, "keyAlgorithms"],
      `a certificate pair's keys are all SM2 or all RSA (the encryption key and its envelope follow the signing key's); make two profiles of ${[...sm2, ...rsa].join(", ")}`,
      "PROFILE_PAIR_ALGORITHM_UNSUPPORTED");
  }
  const enc = profile.certificates!.encryption.keyUsage;
  if (rsa.length && (!enc.includes("keyEncipherment") || enc.some((u) => u !== "keyEncipherment" && u !== "dataEncipherment"))) {
    throw new ProfileInvalidError([...at, "certificates", "encryption", "keyUsage"],
      `an RSA pair's encryption certificate has the key usages keyEncipherment and dataEncipherment (RSA keys do not agree keys), not ${enc.join(", ")}`,
      "PROFILE_PAIR_ALGORITHM_UNSUPPORTED");
  }
  // EST (RFC 7030) answers a certificate only: it has no place for the encryption certificate and its envelope.
  if (profile.renewal.windows.est) {
    throw new ProfileInvalidError([...at, "renewal", "windows", "est"], "EST cannot deliver a certificate pair's encryption key: set it to null for a profile with \"certificates\"");
  }
}

function parseIn(input: unknown, at: ProfilePath): CertificateProfile {
  if (!isPlainObject(input)) throw new ProfileInvalidError(at, "a profile is a JSON object");
  const { preset, ...overrides } = input;
  let base: ProfilePreset;
  if (preset === undefined) {
    const { id: _id, ...rest } = defaultProfile;
    base = rest;
  } else if (isPresetName(preset)) {
    base = profilePresets[preset];
  } else {
    throw new ProfileInvalidError([...at, "preset"], `unknown preset ${JSON.stringify(preset)}; known presets: ${presetNames.join(", ")}`);
  }
  const merged = deepMerge(base, overrides) as Record<string, unknown>;
  // validity is one of two shapes: { days } over { years } must replace it, not give both.
  if ("validity" in overrides) merged.validity = structuredClone(overrides.validity);
  const r = certificateProfileSchema.safeParse(merged);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const path: ProfilePath = [...at, ...issue.path.map((p) => (typeof p === "symbol" ? String(p) : p))];
    // An unknown key is wrong where it stands, not at its parent.
    if (issue.code === "unrecognized_keys" && issue.keys.length) path.push(issue.keys[0]!);
    throw new ProfileInvalidError(path, issue.message);
  }
  const profile = r.data as CertificateProfile;
  if (profile.certificates) checkPair(profile, at);
  return deepFreeze(profile);
}

/**
 * Parses one profile as an operator writes it (configuration file, admin
 * API, or a profile read back from the store). The input is either
 * - `{ "id": ..., "preset": "<preset name>", ...overrides }`: the overrides
 *   deep-merge over the preset (objects merge key by key, so
 *   `{"renewal": {"windows": {"mobile": null}}}` changes one channel; arrays,
 *   null, numbers and `validity` as a whole replace);
 * - or, without `preset`, fields deep-merged over `defaultProfile` (so a
 *   complete profile is taken as it is, and a missing field gets the safe
 *   default).
 * The result is checked against `certificateProfileSchema` and deeply frozen.
 * @throws ProfileInvalidError (a UkeyError PROFILE_INVALID) with `path` to
 *   the first wrong field: not an object, no id, unknown preset, unknown
 *   key, wrong type or range, empty or duplicated algorithm list, a window
 *   that opens after it closes.
 */
export function parseCertificateProfile(input: unknown): CertificateProfile {
  return parseIn(input, []);
}

/**
 * `parseCertificateProfile` for input typed in code, e.g.
 * `resolveProfile({ id: "personal", preset: "bank-personal-ukey", renewal: { windows: { mobile: null } } })`.
 * @throws ProfileInvalidError as parseCertificateProfile.
 */
export function resolveProfile(input: ProfileInput): CertificateProfile {
  return parseIn(input, []);
}

/**
 * Parses a list of profiles (a configuration's `profiles` array). Each is
 * parsed as by parseCertificateProfile; the error path starts with its index.
 * @throws ProfileInvalidError when the input is not an array, any profile is
 *   invalid, or two profiles share an id (path [index, "id"] of the second).
 */
export function parseProfiles(input: unknown): CertificateProfile[] {
  if (!Array.isArray(input)) throw new ProfileInvalidError([], "profiles are a JSON array");
  const seen = new Map<string, number>();
  return input.map((p, i) => {
    const profile = parseIn(p, [i]);
    const first = seen.get(profile.id);
    if (first !== undefined) throw new ProfileInvalidError([i, "id"], `the id ${JSON.stringify(profile.id)} is already used by profile ${first}`);
    seen.set(profile.id, i);
    return profile;
  });
}
