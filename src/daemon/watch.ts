import type { App } from '../app';
import { asBackupError } from '../errors';
import { log } from '../logger';
import { takeSnapshot, type DaemonInfo, type Snapshot } from '../monitor/snapshot';

/** How long one check may wait on a storage target before it reports it as not answering. */
const CHECK_DEADLINE_MS = 60_000;

export type SnapshotListener = (s: Snapshot) => void | Promise<void>;

/**
 * The daemon's checks (issue 21): every BACKUP_CHECK_MINUTES, at start and after every backup or
 * drill, a snapshot of every database; each listener (the early-warning alerts, the metrics file,
 * the HTTP server) is given it in turn. Independent of the backup schedule: a stuck scheduler,
 * refused runs or a stepped clock do not stop it. One check at a time; a refresh asked for
 * while one runs runs once after it.
 */
export class Watch {
  private current: Snapshot | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: SnapshotListener[] = [];
  private readonly stopping = new AbortController();

  constructor(
    private readonly apps: App[],
    readonly info: DaemonInfo,
  ) {}

  /** The newest snapshot; undefined until the first check ended. */
  latest(): Snapshot | undefined {
    return this.current;
  }

  onSnapshot(listener: SnapshotListener): void {
    this.listeners.push(listener);
  }

  /** Starts the timer and the first check. */
  start(): void {
    const every = this.apps[0]!.config.monitor.checkIntervalMs;
    this.timer = setInterval(() => this.refresh(), every);
    this.timer.unref();
    this.refresh();
  }

  /** A check now, or once the running one ended. */
  refresh(): void {
    if (this.stopping.signal.aborted) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.check().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
  }

  /** Resolves when the check running now (if any) ended. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.timer);
    await this.idle();
  }

  private async check(): Promise<void> {
    try {
      const s = await takeSnapshot(this.apps, this.info, { deadlineMs: CHECK_DEADLINE_MS, signal: this.stopping.signal });
      if (this.stopping.signal.aborted) return;
      this.current = s;
      for (const l of this.listeners) {
        try {
          await l(s);
        } catch (err) {
          log.error('a monitoring step failed', { error: asBackupError(err).message });
        }
      }
    } catch (err) {
      log.error('the monitoring check failed', { error: asBackupError(err).message });
    }
  }
}
