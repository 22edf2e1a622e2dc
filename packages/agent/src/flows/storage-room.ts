import { isUkeyError } from "@ukey/policy";
import type { TokenSession } from "../keys/key-store.js";
import type { Prompter } from "../prompter.js";
import { planCleanUp, removeInvalid, type InvalidObject } from "./clean-up.js";
import type { FaultPoint } from "./flow-types.js";
import { report, sameSerial } from "./token-access.js";

type CleanUpOptions = NonNullable<Parameters<typeof planCleanUp>[3]>;

/** What withRoomOnToken may remove, and whom it tells. */
export interface RoomOptions {
  /** Ids (CKA_ID / container) that must stay whatever planCleanUp says: the key the step writes for, the certificate being renewed. */
  keep: readonly string[];
  /** Serials (hex) of certificates that must stay, with their keys: the certificate being renewed. */
  keepSerials?: readonly string[];
  prompter: Pick<Prompter, "progress">;
  /** Passed to planCleanUp: the server's view of each certificate and of pending orders (without them only what the token shows is removed). */
  serverView?: CleanUpOptions["serverView"];
  orderState?: CleanUpOptions["orderState"];
  now?: () => Date;
  fault?: FaultPoint;
  /** Told what was removed (for the flow's result or a test). */
  onRemoved?: (removed: InvalidObject[]) => void;
}

/**
 * Runs a step that writes the token (a key generation, a certificate or an
 * envelope import) and, when the token says its storage is full
 * (TOKEN_STORAGE_FULL), removes its invalid objects, as `ukey clean-up`
 * would (planCleanUp: superseded, revoked, expired-and-replaced
 * certificates with their keys, orphan keys; never what `keep` names, never
 * the only certificate of a subject, never a pending key of an open order),
 * and runs the step once more: the remedy TOKEN_STORAGE_FULL promises.
 * When nothing is invalid, or the second try is full too, the holder gets
 * TOKEN_STORAGE_FULL, whose remedy then is initialisation.
 * @throws UkeyError what the step throws.
 */
export async function withRoomOnToken<T>(session: TokenSession, step: () => Promise<T>, opts: RoomOptions): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (!isUkeyError(e, "TOKEN_STORAGE_FULL")) throw e;
    const certs = await session.listCertificates();
    const keep = new Set(opts.keep);
    for (const c of certs) if (opts.keepSerials?.some((s) => sameSerial(s, c.serialHex))) keep.add(c.id);
    const plan = await planCleanUp(certs, await session.listKeys(), (opts.now ?? (() => new Date()))(), {
      keep,
      ...(opts.serverView ? { serverView: opts.serverView } : {}),
      ...(opts.orderState ? { orderState: opts.orderState } : {}),
    });
    if (plan.length === 0) throw e;
    report(opts.prompter, "clean-up", `UKey 存储空间已满：正在删除 ${plan.length} 个无效的证书或密钥后重试`,
      `The UKey's storage is full: removing ${plan.length} invalid certificate(s) or key(s), then trying again`);
    await removeInvalid(session, plan, opts.fault);
    opts.onRemoved?.(plan);
    return await step();
  }
}
