import cron, { type ScheduledTask, type TaskContext } from 'node-cron';
import { log } from '../logger';
import { nextRun, previousRun } from './cron-time';

export interface SchedulerOptions {
  expression: string;
  timezone: string;
  name: string;
  /** The work. Its failures are the callee's to report; a rejection here is only logged. */
  run: (trigger: 'schedule' | 'catch-up') => Promise<void>;
  /** How late a tick may fire before it is worth a warning. */
  lateAfterMs?: number;
}

/**
 * Runs a job on a cron schedule, one at a time: a tick that comes while the job still runs is
 * skipped with a warning (also a catch-up run and a tick cannot overlap).
 */
export class Scheduler {
  private task: ScheduledTask | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: SchedulerOptions) {}

  start(): void {
    cron.setLogger({
      info: (m) => log.debug(`node-cron: ${m}`),
      warn: (m) => log.warn(`node-cron: ${m}`),
      error: (m) => log.error(`node-cron: ${String(m)}`),
      debug: (m) => log.debug(`node-cron: ${String(m)}`),
    });
    this.task = cron.schedule(this.opts.expression, (ctx) => this.tick(ctx), {
      timezone: this.opts.timezone,
      name: this.opts.name,
      noOverlap: true,
    });
    this.task.on('execution:overlap', () => log.warn(`${this.opts.name}: skipped a scheduled run, the previous one is still running`));
    this.task.on('execution:missed', (ctx) => log.warn(`${this.opts.name}: a scheduled run was missed`, { scheduled_for: ctx.date.toISOString() }));
  }

  /** Stops scheduling. A run in progress goes on; await `idle()` for it. */
  async stop(): Promise<void> {
    const t = this.task;
    this.task = undefined;
    if (t) await t.destroy();
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Resolves when no run is in progress. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  nextRun(from = new Date()): Date {
    return nextRun(this.opts.expression, this.opts.timezone, from);
  }

  previousRun(from = new Date()): Date {
    return previousRun(this.opts.expression, this.opts.timezone, from);
  }

  /** Starts a run now unless one is running; returns its promise (or undefined when skipped). */
  trigger(trigger: 'schedule' | 'catch-up'): Promise<void> | undefined {
    if (this.running) {
      log.warn(`${this.opts.name}: not starting a ${trigger} run, one is still running`);
      return undefined;
    }
    const p = this.opts
      .run(trigger)
      .catch((err: unknown) => log.error(`${this.opts.name}: run failed`, { error: String(err) }))
      .finally(() => {
        this.running = undefined;
        if (this.task) log.info(`${this.opts.name}: next run at ${this.nextRun().toISOString()}`);
      });
    this.running = p;
    return p;
  }

  private async tick(ctx: TaskContext): Promise<void> {
    const lateMs = ctx.triggeredAt.getTime() - ctx.date.getTime();
    if (lateMs > (this.opts.lateAfterMs ?? 60_000)) {
      log.warn(`${this.opts.name}: the timer fired ${Math.round(lateMs / 1000)}s late (was the machine suspended or overloaded?)`);
    }
    await this.trigger('schedule');
  }
}
