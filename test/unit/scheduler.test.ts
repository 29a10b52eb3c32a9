import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { log } from '../../src/logger';
import { Scheduler } from '../../src/scheduler/scheduler';

// Fake timers model a clock step exactly: vi.setSystemTime moves the wall clock (Date) while
// timers and performance.now() keep counting monotonic time, as libuv's do.

const HOURLY = '0 0 * * * *';
const DAILY_3AM = '0 0 3 * * *';

interface Run {
  trigger: string;
  at: string;
}

let warnings: string[];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
  warnings = [];
  vi.spyOn(log, 'warn').mockImplementation((msg) => void warnings.push(msg));
  vi.spyOn(log, 'info').mockImplementation(() => undefined);
  vi.spyOn(log, 'debug').mockImplementation(() => undefined);
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

function scheduler(expression: string, work: () => Promise<void> = () => Promise.resolve()): { s: Scheduler; runs: Run[] } {
  const runs: Run[] = [];
  const s = new Scheduler({
    expression,
    timezone: 'UTC',
    name: 'backup',
    run: async (trigger) => {
      runs.push({ trigger, at: new Date().toISOString() });
      await work();
    },
  });
  return { s, runs };
}

/** Moves the wall clock by `ms` without moving monotonic time: an NTP step or a resumed VM. */
function stepClock(ms: number): void {
  vi.setSystemTime(Date.now() + ms);
}

const MIN = 60_000;
const HOUR = 60 * MIN;

describe('Scheduler', () => {
  it('runs each slot on time, as "schedule"', async () => {
    vi.setSystemTime(new Date('2026-03-10T00:59:30Z'));
    const { s, runs } = scheduler(HOURLY);
    s.start();
    await vi.advanceTimersByTimeAsync(2 * HOUR);
    await s.stop();
    expect(runs).toEqual([
      { trigger: 'schedule', at: '2026-03-10T01:00:00.000Z' },
      { trigger: 'schedule', at: '2026-03-10T02:00:00.000Z' },
    ]);
    expect(s.lastRun?.slot?.toISOString()).toBe('2026-03-10T02:00:00.000Z');
    expect(warnings).toEqual([]);
  });

  it('a forward step over a slot runs it at once, as a catch-up, once', async () => {
    vi.setSystemTime(new Date('2026-03-10T01:00:00Z'));
    const { s, runs } = scheduler(DAILY_3AM);
    s.start();
    await vi.advanceTimersByTimeAsync(10 * MIN);
    stepClock(3 * HOUR); // 01:10 → 04:10, past the 03:00 slot
    await vi.advanceTimersByTimeAsync(1500);
    expect(runs).toEqual([{ trigger: 'catch-up', at: '2026-03-10T04:10:01.000Z' }]);
    expect(warnings.join('\n')).toMatch(/clock jumped forward by 3h|clock jumped forward by 10800s/);
    expect(warnings.join('\n')).toContain('the run due at 2026-03-10T03:00:00.000Z was missed');
    // The next slot is tomorrow's, on time.
    await vi.advanceTimersByTimeAsync(24 * HOUR);
    await s.stop();
    expect(runs.map((r) => r.trigger)).toEqual(['catch-up', 'schedule']);
    expect(runs[1]!.at).toBe('2026-03-11T03:00:00.000Z');
  });

  it('a forward step that stays before the slot still runs the slot on time', async () => {
    vi.setSystemTime(new Date('2026-03-10T01:00:00Z'));
    const { s, runs } = scheduler(DAILY_3AM);
    s.start();
    stepClock(30 * MIN); // node-cron's timer, armed for two hours of monotonic time, would now fire at 03:30
    await vi.advanceTimersByTimeAsync(HOUR + 30 * MIN + 100);
    await s.stop();
    expect(runs).toEqual([{ trigger: 'schedule', at: '2026-03-10T03:00:00.000Z' }]);
  });

  it('a step back across the slot that just ran does not run it again, and the next slot runs', async () => {
    vi.setSystemTime(new Date('2026-03-10T00:59:50Z'));
    const { s, runs } = scheduler(HOURLY);
    s.start();
    await vi.advanceTimersByTimeAsync(40_000); // 01:00 runs; now 01:00:30
    stepClock(-5 * MIN); // 00:55:30
    await vi.advanceTimersByTimeAsync(10 * MIN); // through 01:00 again
    expect(runs).toEqual([{ trigger: 'schedule', at: '2026-03-10T01:00:00.000Z' }]);
    expect(warnings.join('\n')).toContain('the clock went back by 300s; next run at 2026-03-10T02:00:00.000Z');
    await vi.advanceTimersByTimeAsync(HOUR);
    await s.stop();
    expect(runs.map((r) => r.at)).toEqual(['2026-03-10T01:00:00.000Z', '2026-03-10T02:00:00.000Z']);
  });

  it('after a long step back the next slot of the new clock runs, without waiting for the old one', async () => {
    vi.setSystemTime(new Date('2026-03-10T00:59:50Z'));
    const { s, runs } = scheduler(HOURLY);
    s.start();
    await vi.advanceTimersByTimeAsync(10 * MIN); // 01:00 runs; now 01:09:50
    stepClock(-3 * HOUR); // 22:09:50 the day before
    await vi.advanceTimersByTimeAsync(HOUR);
    await s.stop();
    expect(runs).toEqual([
      { trigger: 'schedule', at: '2026-03-10T01:00:00.000Z' },
      { trigger: 'schedule', at: '2026-03-09T23:00:00.000Z' },
    ]);
  });

  it('a step back and then forward again (a correction) runs what the forward step passed, never the slot that ran', async () => {
    vi.setSystemTime(new Date('2026-03-10T00:59:50Z'));
    const { s, runs } = scheduler(HOURLY);
    s.start();
    await vi.advanceTimersByTimeAsync(30_000); // 01:00 runs; now 01:00:20
    stepClock(-2 * HOUR); // 23:00:20 the day before
    await vi.advanceTimersByTimeAsync(HOUR + MIN); // 00:00 of the new clock runs; node-cron's own timer now sleeps for hours
    stepClock(2 * HOUR); // 02:01:20: 01:00 ran before, 02:00 was passed
    await vi.advanceTimersByTimeAsync(HOUR);
    await s.stop();
    expect(runs.map((r) => `${r.trigger} ${r.at}`)).toEqual([
      'schedule 2026-03-10T01:00:00.000Z',
      'schedule 2026-03-10T00:00:00.000Z',
      'catch-up 2026-03-10T02:01:21.000Z',
      'schedule 2026-03-10T03:00:00.000Z',
    ]);
    expect(warnings.join('\n')).toContain('the run due at 2026-03-10T02:00:00.000Z was missed');
  });

  it('a slot that comes while a run is still going is skipped, not caught up afterwards', async () => {
    vi.setSystemTime(new Date('2026-03-10T00:59:50Z'));
    let finish!: () => void;
    const { s, runs } = scheduler(HOURLY, () => new Promise<void>((r) => (finish = r)));
    s.start();
    await vi.advanceTimersByTimeAsync(HOUR + 20_000); // 01:00 starts and is still running at 02:00
    expect(warnings).toContain('backup: skipped a scheduled run, the previous one is still running');
    finish();
    await vi.advanceTimersByTimeAsync(30 * MIN);
    expect(runs.map((r) => r.at)).toEqual(['2026-03-10T01:00:00.000Z']);
    await vi.advanceTimersByTimeAsync(HOUR);
    finish();
    await s.stop();
    await s.idle();
    expect(runs.map((r) => r.at)).toEqual(['2026-03-10T01:00:00.000Z', '2026-03-10T03:00:00.000Z']);
    expect(s.lastRun?.slot?.toISOString()).toBe('2026-03-10T03:00:00.000Z');
    expect(s.lastRun?.finishedAt?.toISOString()).toBe('2026-03-10T03:30:10.000Z');
  });

  it('warns when its timer fires late', async () => {
    vi.setSystemTime(new Date('2026-03-10T00:10:00Z'));
    const { s } = scheduler(HOURLY);
    s.start();
    // Simulate a blocked event loop: both clocks move on, no timer fires meanwhile.
    const monotonic = performance.now.bind(performance);
    vi.spyOn(performance, 'now').mockImplementation(() => monotonic() + 20_000);
    vi.setSystemTime(Date.now() + 20_000);
    await vi.advanceTimersByTimeAsync(1000);
    await s.stop();
    expect(warnings.join('\n')).toMatch(/the timer fired 20s late/);
  });
});
