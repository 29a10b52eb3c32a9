import cron, { type ScheduledTask } from 'node-cron';
import { log } from '../logger';
import { nextRun, previousRun } from './cron-time';

export type Trigger = 'schedule' | 'catch-up';

export interface SchedulerOptions {
  expression: string;
  timezone: string;
  name: string;
  /** The work. Its failures are the callee's to report; a rejection here is only logged. */
  run: (trigger: Trigger) => Promise<void>;
  /**
   * What the current run still waits for before its work starts (e.g. "a place among
   * BACKUP_MAX_PARALLEL"), or undefined once it works. A slot that comes meanwhile is not
   * skipped: the waiting run stands for it, as it takes the data as it is when it starts.
   */
  waitingFor?: () => string | undefined;
  /** A run that starts later than this after its scheduled time counts as missed: it is a catch-up. */
  lateAfterMs?: number;
  /** How often the watchdog compares the wall clock with the schedule. */
  watchdogMs?: number;
}

/** The last run the scheduler started. */
export interface LastRun {
  trigger: Trigger;
  /** The scheduled time it ran for; undefined for a catch-up the daemon asked for at start. */
  slot: Date | undefined;
  startedAt: Date;
  /** Undefined while it runs. */
  finishedAt: Date | undefined;
}

/** A difference between wall-clock and monotonic time larger than this between two looks is a clock step. */
const CLOCK_STEP_MS = 2000;

/**
 * Runs a job on a cron schedule, one run at a time, trusting the wall clock only as far as it
 * goes. Every scheduled time ("slot") is handled at most once: it runs, or it is skipped with a
 * warning when the previous run is still going (a catch-up run and a slot cannot overlap either),
 * or, when the previous run still waits to start (`waitingFor`), that run stands for it.
 *
 * node-cron wakes the scheduler at each slot; a watchdog looks at the clock every second as
 * well, because node-cron's one long timer counts monotonic time while slots are wall-clock
 * times: after a forward step (NTP, a paused VM) or a blocked event loop it fires late and drops
 * the slot, and after a backward step it can sleep far past the next slot. The watchdog:
 * - starts a slot the clock has passed without a run at once, as a catch-up (one run for all the
 *   slots missed, as at start-up);
 * - notices clock steps by comparing wall-clock with monotonic time, and after a backward step
 *   takes the next slot of the new clock, except the slot that ran last, which never runs twice;
 * - warns when its own timer fires late (a blocked event loop or a suspended machine).
 */
export class Scheduler {
  private task: ScheduledTask | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** The newest slot handled (run, or skipped because a run was going). */
  private lastSlot: Date | undefined;
  /** The next slot to run. */
  private upcoming: Date | undefined;
  /** After a step back: the slot handled last, now ahead of the clock; it does not run again. */
  private ranAhead: Date | undefined;
  private lastLook = { wall: 0, mono: 0 };
  private last: LastRun | undefined;

  constructor(private readonly opts: SchedulerOptions) {}

  /**
   * Starts scheduling from now on. The last slot before now counts as handled: at start-up the
   * daemon's catch-up decides whether it needs a run.
   */
  start(): void {
    cron.setLogger({
      info: (m) => log.debug(`node-cron: ${m}`),
      warn: (m) => log.debug(`node-cron: ${m}`),
      error: (m) => log.error(`node-cron: ${String(m)}`),
      debug: (m) => log.debug(`node-cron: ${String(m)}`),
    });
    const now = new Date();
    this.lastSlot = this.slotAtOrBefore(now);
    this.upcoming = this.slotAfter(now);
    this.lastLook = { wall: now.getTime(), mono: performance.now() };
    this.task = cron.schedule(this.opts.expression, () => this.look(), { timezone: this.opts.timezone, name: this.opts.name });
    // node-cron's own "missed" verdicts: the watchdog decides what to run.
    this.task.on('execution:missed', () => this.look());
    this.watchdog = setInterval(() => this.look(), this.watchdogMs);
  }

  /** Stops scheduling. A run in progress goes on; await `idle()` for it. */
  async stop(): Promise<void> {
    const t = this.task;
    this.task = undefined;
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    if (t) await t.destroy();
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** The last run started, or undefined before the first. */
  get lastRun(): LastRun | undefined {
    return this.last;
  }

  /** Resolves when no run is in progress. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** The next scheduled run: while scheduling, the next slot the scheduler will take. */
  nextRun(from = new Date()): Date {
    if (this.task && this.upcoming) return this.upcoming;
    return this.slotAfter(from);
  }

  /** The last scheduled time at or before `from`. */
  previousRun(from = new Date()): Date {
    return this.slotAtOrBefore(from);
  }

  /** Starts a run now unless one is running; returns its promise (or undefined when skipped). */
  trigger(trigger: Trigger, slot?: Date): Promise<void> | undefined {
    if (this.running) {
      const waiting = this.opts.waitingFor?.();
      if (waiting) log.info(`${this.opts.name}: no ${trigger} run needed: the one waiting for ${waiting} starts once there is one`);
      else log.warn(`${this.opts.name}: not starting a ${trigger} run, one is still running`);
      return undefined;
    }
    const last: LastRun = { trigger, slot, startedAt: new Date(), finishedAt: undefined };
    this.last = last;
    log.info(`${this.opts.name}: starting the ${trigger} run${slot ? ` due at ${slot.toISOString()}` : ''}`);
    const p = this.opts
      .run(trigger)
      .catch((err: unknown) => log.error(`${this.opts.name}: run failed`, { error: String(err) }))
      .finally(() => {
        last.finishedAt = new Date();
        this.running = undefined;
        if (this.task) log.info(`${this.opts.name}: next run at ${this.nextRun().toISOString()}`);
      });
    this.running = p;
    return p;
  }

  private get watchdogMs(): number {
    return this.opts.watchdogMs ?? 1000;
  }

  private get lateAfterMs(): number {
    return this.opts.lateAfterMs ?? 5000;
  }

  /** Compares the clock with the schedule; starts the slot that is due, if any. Safe to call at any time. */
  private look(): void {
    if (!this.task || !this.upcoming) return;
    const wall = Date.now();
    const mono = performance.now();
    const stepMs = wall - this.lastLook.wall - (mono - this.lastLook.mono);
    const lateMs = mono - this.lastLook.mono - this.watchdogMs;
    this.lastLook = { wall, mono };
    if (Math.abs(stepMs) >= CLOCK_STEP_MS) this.clockStepped(stepMs, new Date(wall));
    else if (lateMs >= this.lateAfterMs) {
      log.warn(`${this.opts.name}: the timer fired ${seconds(lateMs)} late (was the machine suspended or the process blocked?)`);
    }
    if (wall < this.upcoming.getTime()) return;

    const slot = this.slotAtOrBefore(new Date(wall));
    // The first slot passed without a run: not one that ran before the clock went back.
    let firstDue = this.upcoming;
    if (this.ranAhead && firstDue.getTime() <= this.ranAhead.getTime() && slot.getTime() > this.ranAhead.getTime()) firstDue = this.slotAfter(this.ranAhead);
    const ranBefore = slot.getTime() === this.ranAhead?.getTime();
    if (this.ranAhead && slot.getTime() >= this.ranAhead.getTime()) this.ranAhead = undefined;
    this.lastSlot = slot;
    this.upcoming = this.slotAfter(slot);
    if (ranBefore) {
      log.info(`${this.opts.name}: the run due at ${slot.toISOString()} ran before the clock went back; next run at ${this.upcoming.toISOString()}`);
      return;
    }
    if (this.running) {
      const waiting = this.opts.waitingFor?.();
      if (waiting) log.info(`${this.opts.name}: the run due at ${slot.toISOString()} is the one still waiting for ${waiting}: it starts once there is one`);
      else log.warn(`${this.opts.name}: skipped a scheduled run, the previous one is still running`, { scheduled_for: slot.toISOString() });
      return;
    }
    if (firstDue.getTime() === slot.getTime() && wall - slot.getTime() <= this.lateAfterMs) {
      void this.trigger('schedule', slot);
      return;
    }
    log.warn(
      `${this.opts.name}: the run due at ${firstDue.toISOString()} was missed (a clock step, a suspended machine or a blocked timer); catch-up: running it now`,
      {
        latest_due: slot.toISOString(),
        late_s: Math.round((wall - firstDue.getTime()) / 1000),
      },
    );
    void this.trigger('catch-up', slot);
  }

  /**
   * After a clock step node-cron's timer is stale: restart it so it follows the new clock. After
   * a step back the next slot is the first after the new time, except the slot handled last,
   * which never runs twice; a step forward needs nothing more, the slots it skipped are due now.
   */
  private clockStepped(stepMs: number, now: Date): void {
    const task = this.task;
    if (task) void Promise.resolve(task.stop()).then(() => task.start());
    if (stepMs > 0) {
      log.warn(`${this.opts.name}: the clock jumped forward by ${seconds(stepMs)}`);
      return;
    }
    if (this.lastSlot && this.lastSlot.getTime() > now.getTime()) this.ranAhead = this.lastSlot;
    let next = this.slotAfter(now);
    if (next.getTime() === this.ranAhead?.getTime()) next = this.slotAfter(next);
    this.upcoming = next;
    log.warn(`${this.opts.name}: the clock went back by ${seconds(-stepMs)}; next run at ${next.toISOString()}`, {
      last_slot: this.lastSlot?.toISOString(),
    });
  }

  private slotAfter(from: Date): Date {
    return nextRun(this.opts.expression, this.opts.timezone, from);
  }

  private slotAtOrBefore(from: Date): Date {
    return previousRun(this.opts.expression, this.opts.timezone, from);
  }
}

function seconds(ms: number): string {
  return ms >= 10_000 ? `${Math.round(ms / 1000)}s` : `${(ms / 1000).toFixed(1)}s`;
}
