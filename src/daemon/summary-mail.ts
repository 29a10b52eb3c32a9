import os from 'node:os';
import path from 'node:path';
import { log } from '../logger';
import type { Snapshot } from '../monitor/snapshot';
import { composeSummary } from '../monitor/summary';
import type { Alerter } from '../notify/alerts';
import { nextRun, previousRun } from '../scheduler/cron-time';
import { readJson, writeJsonAtomic } from '../state/json-file';

/** setTimeout's longest wait; a later slot is waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The summary mail on BACKUP_SUMMARY_SCHEDULE: at each slot it asks the Watch for a fresh check
 * (`refresh`) and, from the first snapshot taken at or after the slot, mails (and posts) the
 * summary of the period since the snapshot of the previous one (kept in
 * BACKUP_STATE_DIR/monitor-summary.json; the schedule's previous slot the first time). A slot missed while the daemon was down is not
 * sent late; the next summary covers that time too.
 */
export class SummaryMail {
  private timer: NodeJS.Timeout | undefined;
  private due: Date | undefined;
  private readonly file: string;

  constructor(
    private readonly schedule: string,
    private readonly timezone: string,
    stateDir: string,
    private readonly alerter: Alerter,
    private readonly refresh: () => void,
  ) {
    this.file = path.join(stateDir, 'monitor-summary.json');
  }

  start(): void {
    this.arm(nextRun(this.schedule, this.timezone));
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.due = undefined;
  }

  async onSnapshot(s: Snapshot): Promise<void> {
    const slot = this.due;
    if (!slot || Date.parse(s.taken_at) < slot.getTime()) return;
    this.due = undefined;
    // up to the snapshot the last summary was made from: each backup and drill is in one summary
    const last = readJson<{ covered_until?: string }>(this.file)?.covered_until;
    const since = last && Date.parse(last) < slot.getTime() ? new Date(last) : previousRun(this.schedule, this.timezone, new Date(slot.getTime() - 1));
    const { subject, text } = composeSummary(s, since, os.hostname());
    const sent = await this.alerter.send({ kind: 'summary', subject, text });
    log.info(sent ? 'summary sent' : 'summary not sent', { since: since.toISOString() });
    if (sent) writeJsonAtomic(this.file, { covered_until: s.taken_at });
  }

  private arm(at: Date): void {
    const wait = at.getTime() - Date.now();
    this.timer = setTimeout(
      () => {
        if (at.getTime() > Date.now()) return this.arm(at);
        this.due = at;
        this.refresh();
        this.arm(nextRun(this.schedule, this.timezone, at));
      },
      Math.min(Math.max(0, wait), MAX_TIMER_MS),
    );
    this.timer.unref();
  }
}
