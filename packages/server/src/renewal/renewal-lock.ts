/**
 * How long an order that failed on wrong answers (five wrong ID numbers or
 * one-time codes) pauses its certificate's online renewal: five guesses a
 * day, not five per order. An operator lifts it early in the console
 * (renewal-unlock-service.ts).
 */
export const failureLockMs = 24 * 3_600_000;

/** The end of the pause a failure at `lastFailureAt` puts on renewal, or null when it is over at `at` (or there was none). */
export function renewalLockedUntil(lastFailureAt: number | undefined, at: number): Date | null {
  return lastFailureAt !== undefined && at - lastFailureAt < failureLockMs ? new Date(lastFailureAt + failureLockMs) : null;
}
