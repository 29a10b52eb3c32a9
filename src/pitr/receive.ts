/**
 * The WAL receiver of one cluster (design (b) of docs/pitr.md): pg_receivewal streams the WAL
 * through a replication slot into a spool under BACKUP_STATE_DIR, as the app's user; each
 * completed file is pushed to the targets in this process (no Node start per segment), several
 * at once, and leaves the spool only once every required target holds it. pg_receivewal is
 * restarted with a backoff whenever it ends; the slot makes the server keep the WAL meanwhile
 * (up to max_slot_wal_keep_size).
 */
import fs from 'node:fs';
import type { App } from '../app';
import { asBackupError, BackupError } from '../errors';
import { acquireLock, lockHolder, type Lock } from '../lock/file-lock';
import { log } from '../logger';
import { isPermanent } from './receivewal-errors';
import { createSlot, startStream, stopLeftover, type WalStream } from './receivewal';
import { ReceiverRecorder } from './receiver-record';
import { readSlotLag, type SlotLag } from './slot-lag';
import { SpoolPusher, type QueueState } from './spool-pusher';
import { makeSpool, spoolPaths, type SpoolPaths } from './spool';
import { removedSegment, skipGap, type WalGap } from './wal-gap';

/** How many files are pushed at once (several of them compressed by one zstd run when the spool fills: spool-pusher.ts). */
const PARALLEL_PUSHES = 6;
/** How often the spool is looked at besides the file-system events (which may be missed). */
const SCAN_MS = 1000;
const SLOT_LAG_MS = 30_000;
const FIRST_RESTART_MS = 1000;
const MAX_RESTART_MS = 60_000;
/** A pg_receivewal still streaming this long after its start has recovered: the next restart waits the first backoff again. */
const HEALTHY_RUN_MS = 10_000;
/** How long stop() waits for pushes in flight. */
const STOP_PUSHES_MS = 10_000;

export interface ReceiverState extends QueueState {
  slot: string;
  spool: string;
  /** pg_receivewal streams now. */
  streaming: boolean;
  /** Why pg_receivewal last ended, and when; cleared once it streams again for a while. */
  streamError: { message: string; at: string } | undefined;
  /** pg_receivewal runs that failed in a row. */
  failuresInARow: number;
  slotLag: SlotLag | undefined;
  /** The last time the server had removed WAL before the receiver took it: the archive has a gap from there. */
  gap: WalGap | undefined;
}

export interface ReceiverEvents {
  /** pg_receivewal failed (`inARow`: how many runs in a row), or a push failed. */
  onFailure?(err: BackupError, inARow: number): void;
  /** pg_receivewal streamed again after failures. */
  onRecovered?(): void;
  onArchived?(wal: string): void;
  /** The server removed WAL before the receiver took it; streaming starts again from where the server is now. */
  onGap?(gap: WalGap): void;
}

export class WalReceiver {
  readonly slot: string;
  private readonly paths: SpoolPaths;
  private readonly pusher: SpoolPusher;
  private readonly recorder: ReceiverRecorder;
  private readonly stopping = new AbortController();
  private stream: WalStream | undefined;
  private lock: Lock | undefined;
  private watcher: fs.FSWatcher | undefined;
  private timers: NodeJS.Timeout[] = [];
  private streamError: ReceiverState['streamError'];
  private failuresInARow = 0;
  private slotLag: SlotLag | undefined;
  private gap: WalGap | undefined;
  private loop: Promise<void> = Promise.resolve();
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly app: App,
    private readonly events: ReceiverEvents = {},
  ) {
    this.slot = app.config.pitr.slotName;
    this.paths = spoolPaths(app);
    this.recorder = new ReceiverRecorder(this.paths.recordFile);
    this.pusher = new SpoolPusher(
      app,
      this.paths,
      PARALLEL_PUSHES,
      (e) => events.onFailure?.(e, 0),
      // the record follows each second (SCAN_MS): written at every push, it cost a write per segment
      (w) => events.onArchived?.(w),
    );
  }

  /**
   * Takes the spool (a second receiver is refused, LOCKED), stops a pg_receivewal a killed
   * receiver left, creates the slot when missing, and starts streaming. Resolves once
   * pg_receivewal has started; `done` settles when the receiver stops, rejecting with a
   * permanent failure (no REPLICATION, no pg_hba line) when `failFast`.
   */
  async start(opts: { failFast?: boolean } = {}): Promise<{ done: Promise<void> }> {
    this.lock = this.takeSpool();
    try {
      makeSpool(this.paths);
      await stopLeftover(this.paths.pidFile, this.paths.dir);
      await createSlot(this.app, this.slot, this.stopping.signal);
    } catch (err) {
      const e = asBackupError(err);
      if (opts.failFast && isPermanent(e)) {
        this.lock.release();
        throw e;
      }
      this.failed(e);
    }
    this.watchSpool();
    let done!: Promise<void>;
    this.loop = done = this.streamLoop(opts.failFast === true);
    return { done };
  }

  /** The spool's lock: a second receiver on it is refused, naming the one that runs. */
  private takeSpool(): Lock {
    try {
      return acquireLock(this.paths.lockFile, `wal-receive of ${this.app.database.name}`);
    } catch (err) {
      if (!(err instanceof BackupError && err.code === 'LOCKED')) throw err;
      const holder = lockHolder(this.paths.lockFile);
      throw new BackupError(
        'LOCKED',
        `a WAL receiver of ${this.app.database.name} runs already${holder ? ` (pid ${holder.pid}, since ${holder.acquired_at})` : ''}`,
        {
          hint: 'One receiver per server: stop `wal-receive`, or the daemon with WAL_RECEIVE=on, before starting another.',
        },
      );
    }
  }

  private watchSpool(): void {
    const scan = () => void this.pusher.scan().catch((err) => log.warn('cannot read the WAL spool', { error: asBackupError(err).message }));
    this.timers.push(setInterval(() => this.record(), SCAN_MS));
    // a completed file is a rename (pg_receivewal's `.partial` or `.tmp` to its name); its writes are not looked at
    this.watcher = fs.watch(this.paths.dir, (event) => event === 'rename' && scan());
    this.watcher.on('error', () => undefined);
    this.timers.push(setInterval(scan, SCAN_MS));
    const lag = () =>
      void readSlotLag(this.app, this.slot).then(
        (l) => (this.slotLag = l),
        () => undefined,
      );
    this.timers.push(setInterval(lag, SLOT_LAG_MS));
    lag();
    scan();
  }

  /** Runs pg_receivewal until stop(), restarting it with a backoff whenever it ends. */
  private async streamLoop(failFast: boolean): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      let failure: BackupError | undefined;
      let healthy: NodeJS.Timeout | undefined;
      try {
        if (this.failuresInARow > 0) await createSlot(this.app, this.slot, signal);
        this.stream = await startStream(this.app, this.paths.dir, this.slot, this.paths.pidFile, (line) => this.onLine(line));
        healthy = setTimeout(() => this.recovered(), HEALTHY_RUN_MS);
        failure = await this.stream.ended;
      } catch (err) {
        failure = asBackupError(err);
      } finally {
        clearTimeout(healthy);
      }
      this.stream = undefined;
      if (signal.aborted) break;
      failure ??= new BackupError('DB_CONNECT', 'pg_receivewal ended');
      if (failFast && isPermanent(failure)) throw failure;
      const removed = removedSegment(failure.message);
      if (removed && (await this.skipGap(removed))) continue;
      this.failed(failure);
      const wait = Math.min(MAX_RESTART_MS, FIRST_RESTART_MS * 2 ** (this.failuresInARow - 1));
      log.warn(`pg_receivewal ended; restarting it in ${wait / 1000} s`, { error: failure.message });
      await new Promise<void>((r) => {
        const t = setTimeout(r, wait);
        signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
      });
    }
  }

  /**
   * The server no longer has `from`: streaming starts again from where the server is now, once the
   * files before the gap have left the spool (until then, the usual backoff). True when it did.
   */
  private async skipGap(from: string): Promise<boolean> {
    const waiting = this.pusher.state().files;
    if (waiting > 0) {
      log.warn(`the server no longer has WAL ${from}; ${waiting} file(s) before it still wait in the spool: they are pushed first`);
      return false;
    }
    try {
      this.gap = await skipGap(this.app, this.slot, this.paths.dir, from, this.stopping.signal);
    } catch (err) {
      log.warn(`could not start again after the WAL the server removed: ${asBackupError(err).message}`);
      return false;
    }
    log.error(`the server removed WAL from ${from} before it was archived: the archive has a gap; streaming starts again at ${this.gap.resumeLsn}`, {
      hint: 'Point-in-time recovery cannot cross the gap: a new base backup is needed (the daemon takes one). Raise max_slot_wal_keep_size, and keep the receiver running.',
    });
    this.failuresInARow = 0;
    this.streamError = undefined;
    this.events.onGap?.(this.gap);
    return true;
  }

  private failed(e: BackupError): void {
    this.failuresInARow++;
    this.streamError = { message: e.message, at: new Date().toISOString() };
    this.events.onFailure?.(e, this.failuresInARow);
  }

  /** pg_receivewal has streamed for a while, or completed a segment: the failures are over. */
  private recovered(): void {
    if (this.failuresInARow === 0) return;
    this.failuresInARow = 0;
    this.streamError = undefined;
    log.info('pg_receivewal streams again');
    this.events.onRecovered?.();
  }

  private onLine(line: string): void {
    log.debug(line);
    if (/starting log streaming at/.test(line)) log.info(`WAL streaming from slot ${this.slot}: ${line.replace(/^pg_receivewal: /, '')}`);
    if (/finished segment at/.test(line)) this.recovered();
  }

  state(): ReceiverState {
    return {
      ...this.pusher.state(),
      slot: this.slot,
      spool: this.paths.dir,
      streaming: this.stream !== undefined,
      streamError: this.streamError,
      failuresInARow: this.failuresInARow,
      slotLag: this.slotLag,
      gap: this.gap,
    };
  }

  /** Writes the record `status` and the daemon's checks read (./receiver-record.ts); a failure to write it only logs. */
  private record(running = true): void {
    try {
      this.recorder.save(this.state(), running);
    } catch (err) {
      log.debug('cannot write the WAL receiver record', { error: asBackupError(err).message });
    }
  }

  /** SIGTERM to pg_receivewal (it keeps its `.partial`), then waits for the pushes in flight (bounded). Safe twice. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping.abort();
      this.stream?.stop();
      await this.loop.catch(() => undefined);
      this.watcher?.close();
      for (const t of this.timers) clearInterval(t);
      await this.pusher.stop(STOP_PUSHES_MS);
      this.record(false);
      this.lock?.release();
    })();
    return this.stopped;
  }
}
