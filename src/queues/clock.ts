/**
 * Time for the queue engine, injectable: leases, back-offs and delays all read `now()` and wait
 * with `setTimer`, so tests move time with a ManualClock instead of sleeping.
 */
export interface Clock {
  now(): number;
  /** Calls `fn` after `ms`; returns a handle for `clearTimer`. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

// setTimeout holds at most 2^31-1 ms; longer waits are taken in steps (and re-checked).
const TIMER_MAX_MS = 3_600_000;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, Math.min(ms, TIMER_MAX_MS)));
    t.unref();
    return t;
  },
  clearTimer(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** A clock that moves only when told to: `advance(ms)` runs every timer that falls due. */
export class ManualClock implements Clock {
  #now: number;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  constructor(start = Date.UTC(2030, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Moves time forward, running due timers in time order (each sees its own due time). */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let dueId: number | undefined;
      let due: { at: number; fn: () => void } | undefined;
      for (const [id, t] of this.#timers) if (t.at <= end && (due === undefined || t.at < due.at)) [dueId, due] = [id, t];
      if (due === undefined) break;
      this.#timers.delete(dueId!);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
    }
    this.#now = end;
  }
}
