/** Where time comes from. Policy, RA and CA code take one; tests pass a fixed one. */
export interface Clock {
  now(): Date;
}

/** The real clock. Only program entry points construct it. */
export const systemClock: Clock = { now: () => new globalThis.Date(globalThis.Date.now()) };

/** A clock that stands still at `at` until moved with `set` or `advance` (milliseconds). */
export function fixedClock(at: Date | string): Clock & { set(d: Date | string): void; advance(ms: number): void } {
  let t = new globalThis.Date(at).getTime();
  return {
    now: () => new globalThis.Date(t),
    set: (d) => { t = new globalThis.Date(d).getTime(); },
    advance: (ms) => { t += ms; },
  };
}
