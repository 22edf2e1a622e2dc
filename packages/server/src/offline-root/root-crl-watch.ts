import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../server-context.js";

/** How far ahead of the offline root CRL's nextUpdate the server starts warning. */
export const ROOT_CRL_WARN_DAYS = 30;
const dayMs = 86_400_000;

/**
 * Whether the installed root CRL of an offline root needs replacing soon:
 * the days left before its nextUpdate when fewer than ROOT_CRL_WARN_DAYS
 * remain (negative once it has passed), else undefined (also with the root
 * key on the server, which signs its CRL itself).
 */
export function rootCrlDaysLeft(ctx: Pick<ServerContext, "ca" | "clock">): number | undefined {
  const crl = ctx.ca.installedRootCrl();
  if (!crl) return undefined;
  const left = (crl.nextUpdate.getTime() - ctx.clock.now().getTime()) / dayMs;
  return left < ROOT_CRL_WARN_DAYS ? Math.floor(left) : undefined;
}

/**
 * Logs a warning when the server starts listening, and once a day after,
 * while the offline root's CRL is within ROOT_CRL_WARN_DAYS of its
 * nextUpdate (relying parties that check it refuse the issuing CA after).
 * The metric ukey_root_crl_next_update_seconds gives the same for alerts.
 */
export function watchRootCrl(app: FastifyInstance, ctx: Pick<ServerContext, "ca" | "clock">): void {
  if (!ctx.ca.installedRootCrl()) return;
  const check = () => {
    const left = rootCrlDaysLeft(ctx);
    if (left === undefined) return;
    app.log.warn({ event: "root-crl.expiring", nextUpdate: ctx.ca.installedRootCrl()!.nextUpdate.toISOString(), daysLeft: left },
      left < 0
        ? "the offline root's CRL is past its nextUpdate: relying parties refuse the issuing CA; sign a new one at a ceremony and run ukey-server ca import-root-crl"
        : `the offline root's CRL reaches its nextUpdate in ${left} days: sign the next one at a ceremony and run ukey-server ca import-root-crl`);
  };
  let timer: NodeJS.Timeout | undefined;
  app.addHook("onListen", async () => {
    check();
    timer = setInterval(check, dayMs);
    timer.unref();
  });
  app.addHook("onClose", async () => { if (timer) clearInterval(timer); });
}
