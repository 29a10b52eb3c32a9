import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Pacer } from '../../src/daemon/http/pace';

describe('Pacer (the HTTP server yields to a running backup)', () => {
  beforeEach(() => vi.useFakeTimers({ now: 0 }));
  afterEach(() => vi.useRealTimers());

  /** Asks for `n` turns at once and records when each was let through (fake time, ms). */
  const ask = (p: Pacer, n: number) => {
    const at: Array<number | false> = [];
    const turns = Array.from({ length: n }, (_, i) => p.turn().then((ok) => (at[i] = ok ? Date.now() : false)));
    return { at, done: Promise.all(turns) };
  };

  it('idle, every request passes at once, however many', async () => {
    const p = new Pacer(() => false, 10);
    const { at, done } = ask(p, 500);
    await done;
    expect(new Set(at)).toEqual(new Set([0]));
  });

  it('while busy, lets through one request per 1/rate seconds, in the order they came', async () => {
    const p = new Pacer(() => true, 20);
    const { at, done } = ask(p, 41);
    await vi.advanceTimersByTimeAsync(2_000);
    await done;
    // 41 requests at 20 a second: the first at once, the last two seconds later, 50 ms apart, none early
    expect(at[0]).toBe(0);
    expect(at[40]).toBe(2_000);
    for (let i = 1; i < at.length; i++) expect((at[i] as number) - (at[i - 1] as number)).toBe(50);
  });

  it('lets every waiting request through as soon as the run ends', async () => {
    let busy = true;
    const p = new Pacer(() => busy, 10);
    const { at, done } = ask(p, 30);
    await vi.advanceTimersByTimeAsync(250);
    expect(at.filter((t) => t !== undefined)).toHaveLength(3); // at 0, 100, 200
    busy = false;
    await vi.advanceTimersByTimeAsync(100); // the next tick sees the run ended
    await done;
    expect(at.slice(3).every((t) => t === 300)).toBe(true);
    // and a request after it passes at once
    await expect(p.turn()).resolves.toBe(true);
  });

  it('refuses, at once, a request beyond the number that may wait; release() lets the waiting through (the server stops)', async () => {
    const p = new Pacer(() => true, 1, 5);
    const { at, done } = ask(p, 8);
    await Promise.resolve();
    // one passes, five wait, two are refused at once
    expect(at[0]).toBe(0);
    expect(at.slice(6)).toEqual([false, false]);
    p.release();
    await done;
    expect(at.slice(1, 6)).toEqual([0, 0, 0, 0, 0]);
  });
});
