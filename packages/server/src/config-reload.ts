import { UkeyError, isPairProfile } from "@ukey/policy";
import { canonicalJson } from "@ukey/store";
import { createSenders } from "./delivery/index.js";
import { syncProfiles } from "./profile-sync.js";
import { loadServerConfig, type ServerConfig } from "./server-config.js";
import type { ServerContext } from "./server-context.js";

/**
 * The sections of config.json a running server takes over without a
 * restart: certificate profiles (reminder thresholds included: they are a
 * profile's `renewal.reminders`) and delivery channels. Every other field
 * (ports, database, CA and KMC keys, limits, the reminder scheduler's
 * period...) is read once at start.
 */
export const reloadableSections = ["profiles", "delivery"] as const;

/** What a reload changed. */
export interface ReloadResult {
  /** Profiles written (new or changed); profiles no longer configured stay in the database, as at start. */
  profiles: string[];
  /** Whether the delivery channels were rebuilt from a changed `delivery` section. */
  delivery: boolean;
}

/** Dotted paths of the leaves that differ between `a` and `b` (an array counts as one leaf). */
function differingPaths(a: unknown, b: unknown, at: string[] = []): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => differingPaths(a[k], b[k], [...at, k]));
  }
  return canonicalJson(a ?? null) === canonicalJson(b ?? null) ? [] : [at.join(".") || "(top level)"];
}

/**
 * Reads `<data-dir>/config.json` again and takes over its profiles and
 * delivery channels. All or nothing: the file is parsed and validated in
 * full, a changed field outside those sections is refused naming it, new
 * delivery secrets are read and a pair profile is checked against the KMC,
 * all before anything changes; then the profiles are written and
 * `config.reloaded` audited in one transaction, and only then do the new
 * senders and configuration take effect in this process.
 * @throws UkeyError CONFIG_INVALID, FILE_UNREADABLE, CONFIG_RELOAD_NEEDS_RESTART, KMC_REQUIRED, PROFILE_PAIR_ALGORITHM_UNSUPPORTED, and the store's errors.
 */
export async function reloadServerConfig(ctx: ServerContext, actor: string): Promise<ReloadResult> {
  const next: ServerConfig = loadServerConfig(ctx.layout.config);
  const strip = (c: ServerConfig): Record<string, unknown> => {
    const rest: Record<string, unknown> = { ...c };
    for (const s of reloadableSections) delete rest[s];
    return rest;
  };
  const fields = differingPaths(strip(ctx.config), strip(next));
  if (fields.length) throw new UkeyError("CONFIG_RELOAD_NEEDS_RESTART", { params: { fields: fields.join(", ") } });
  const pairs = next.profiles.filter(isPairProfile).map((p) => p.id);
  if (pairs.length && !ctx.kmc) throw new UkeyError("KMC_REQUIRED", { params: { profiles: pairs.join(", ") } });
  const deliveryChanged = canonicalJson(ctx.config.delivery) !== canonicalJson(next.delivery);
  // Built before anything changes: a secret file that cannot be read refuses the reload.
  const senders = deliveryChanged ? createSenders(next.delivery, { dataDir: ctx.layout.dir, outbox: ctx.store.outbox, clock: ctx.clock }) : undefined;
  const at = ctx.clock.now().getTime();
  const profiles = await ctx.store.transaction(async (r) => {
    const changed = await syncProfiles(r, next.profiles, at, actor);
    await r.audit.append({
      at, actor, action: "config.reloaded", subjectType: "config", subjectId: "config.json",
      data: { profiles: changed, delivery: deliveryChanged },
    });
    return changed;
  });
  // The services hold the same Senders object: its channels are swapped in place.
  if (senders) Object.assign(ctx.senders, senders);
  ctx.reminders.profiles.clear();
  ctx.config = next;
  return { profiles, delivery: deliveryChanged };
}
