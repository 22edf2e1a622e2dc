import { z } from "zod";
import { UkeyError } from "./errors.js";

/**
 * What an institution publishes beside its installers (`/downloads/`), each
 * signed by its distribution key (Ed25519; `ukey-server downloads publish`
 * makes them, the agent verifies them against the key its installer brought):
 * - agent-config: which server the agent talks to and which portal origins it
 *   offers pairing to, so a holder never types a URL;
 * - downloads-manifest: each installer's version, platform, size and SHA-256,
 *   for the agent's update check and for anyone checking a download.
 *
 * The signed bytes are the payload exactly as sent (base64 of its UTF-8
 * JSON), so nothing depends on how JSON is re-serialised. The kind is inside
 * the signed payload: a manifest can never pass as a config.
 */
export const signedDocumentFormat = "ukey-signed/1";

/** The envelope as a file holds it. */
export const signedEnvelopeSchema = z.strictObject({
  format: z.literal(signedDocumentFormat),
  /** SHA-256 of the signing key's SubjectPublicKeyInfo (DER), lowercase hex: names the institution's key. */
  keyId: z.string().regex(/^[0-9a-f]{64}$/),
  algorithm: z.literal("Ed25519"),
  payload: z.base64().max(1_000_000),
  signature: z.base64().max(200),
});

export type SignedEnvelope = z.infer<typeof signedEnvelopeSchema>;

const origin = z.url({ protocol: /^https?$/ }).refine((u) => new URL(u).origin === u.replace(/\/+$/, ""), "an origin: scheme, host and port only");

/** The agent's configuration from the institution. */
export const agentConfigPayloadSchema = z.strictObject({
  kind: z.literal("agent-config"),
  /** The institution's name, shown to the holder. */
  institution: z.string().min(1).max(128),
  /** The renewal server's origin (its public URL). */
  server: origin,
  /** Portal origins offered pairing besides the server's own (the holder still pairs each with the agent's code). */
  origins: z.array(origin).max(16),
  /** When it was published (ISO 8601); a newer one replaces an older one. */
  issuedAt: z.iso.datetime(),
});

export type AgentConfigPayload = z.infer<typeof agentConfigPayloadSchema>;

/** One published file. */
export const manifestFileSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/),
  /** "linux-x64", "win32-x64", ... or "any". */
  platform: z.string().regex(/^[a-z0-9]+(-[a-z0-9]+)?$/),
  version: z.string().min(1).max(64),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

/** The list of installers the institution publishes. */
export const downloadsManifestPayloadSchema = z.strictObject({
  kind: z.literal("downloads-manifest"),
  institution: z.string().min(1).max(128),
  server: origin,
  /** The agent version these downloads carry. */
  version: z.string().min(1).max(64),
  issuedAt: z.iso.datetime(),
  files: z.array(manifestFileSchema).max(256),
});

export type DownloadsManifestPayload = z.infer<typeof downloadsManifestPayloadSchema>;

const payloadSchemas = { "agent-config": agentConfigPayloadSchema, "downloads-manifest": downloadsManifestPayloadSchema } as const;
type Kind = keyof typeof payloadSchemas;
type PayloadOf<K extends Kind> = z.infer<(typeof payloadSchemas)[K]>;

/** The crypto a caller brings (node:crypto in the server and the agent): verify an Ed25519 signature with a key given as SPKI DER. */
export type Ed25519Verify = (data: Uint8Array, signature: Uint8Array, publicKeySpkiDer: Uint8Array) => boolean;

/** What the document is called in messages. */
const names: Record<Kind, string> = { "agent-config": "agent-config.json", "downloads-manifest": "manifest.json" };

/**
 * Checks an envelope against the institution's key and returns its payload.
 * `keyId` is SHA-256 of `publicKeySpkiDer` (the caller computes it with its crypto).
 * @throws UkeyError DOWNLOAD_SIGNATURE_INVALID when it is not an envelope, the
 *   signature does not verify, or the payload is not a `kind` document;
 *   INSTITUTION_MISMATCH when it is signed by another key than the institution's.
 */
export function openSignedDocument<K extends Kind>(
  input: unknown, kind: K, key: { spkiDer: Uint8Array; keyId: string }, verify: Ed25519Verify,
): PayloadOf<K> {
  const what = names[kind];
  const env = signedEnvelopeSchema.safeParse(input);
  if (!env.success) throw new UkeyError("DOWNLOAD_SIGNATURE_INVALID", { params: { file: what }, detail: "not a signed document" });
  if (env.data.keyId !== key.keyId) {
    throw new UkeyError("INSTITUTION_MISMATCH", { params: { file: what }, detail: `signed by key ${env.data.keyId.slice(0, 16)}…, this agent's institution is ${key.keyId.slice(0, 16)}…` });
  }
  const payload = fromBase64(env.data.payload);
  if (!verify(payload, fromBase64(env.data.signature), key.spkiDer)) {
    throw new UkeyError("DOWNLOAD_SIGNATURE_INVALID", { params: { file: what }, detail: "the signature does not verify" });
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw new UkeyError("DOWNLOAD_SIGNATURE_INVALID", { params: { file: what }, detail: "the signed payload is not JSON" });
  }
  const parsed = payloadSchemas[kind].safeParse(json);
  if (!parsed.success) throw new UkeyError("DOWNLOAD_SIGNATURE_INVALID", { params: { file: what }, detail: `the signed payload is not a ${kind}: ${parsed.error.issues[0]?.message ?? ""}` });
  return parsed.data as PayloadOf<K>;
}

/**
 * Makes an envelope: `sign` signs the payload bytes with the institution's key.
 * @throws ZodError when the payload does not fit its kind's schema (a defect of the caller).
 */
export function makeSignedDocument<K extends Kind>(
  kind: K, payload: PayloadOf<K>, keyId: string, sign: (data: Uint8Array) => Uint8Array,
): SignedEnvelope {
  const bytes = new TextEncoder().encode(JSON.stringify(payloadSchemas[kind].parse(payload)));
  return { format: signedDocumentFormat, keyId, algorithm: "Ed25519", payload: toBase64(bytes), signature: toBase64(sign(bytes)) };
}

// Without Buffer: this package is also bundled into the portal.
function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
