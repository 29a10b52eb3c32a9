/**
 * Empties the WAL receiver's spool: each completed file is pushed with pushWal (in this process,
 * several at once), and removed only once every required target holds it. The files a look
 * starts together are compressed by one run of the zstd program, which reads them itself
 * (compressWalFiles): when the spool fills under a write load, one program start serves several
 * segments, and no segment passes through a pipe of this process. A push that fails or
 * passes WAL_PUSH_TIMEOUT_SECONDS leaves its file in the spool and is tried again with a backoff:
 * the spool is the queue. The newest segment pushed stays in the spool as pg_receivewal's marker
 * of where it is (a restarted pg_receivewal continues after the newest segment it finds).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createApp, type App } from '../app';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import { newerSegment, walKind } from '../wal/segment';
import { compressWalFiles } from './encode';
import { pushWal } from './push';
import { completedFiles, type SpooledWal, type SpoolPaths } from './spool';

const FIRST_RETRY_MS = 1000;
/** zstd runs over a batch that fail in a row before batches stop (compress). */
const BATCH_FAILURES = 3;
const MAX_RETRY_MS = 30_000;

/** What waits in the spool and how the pushes go. */
export interface QueueState {
  /** Completed files not yet on every required target. */
  files: number;
  bytes: number;
  /** How long the oldest of them has waited (since pg_receivewal completed it); 0 when none. */
  oldestAgeMs: number;
  /** Pushes running now. */
  pushing: number;
  /** The newest segment archived (not the last push to end: pushes run side by side), and when. */
  lastArchived: { wal: string; at: string } | undefined;
  lastError: { wal: string; message: string; at: string } | undefined;
  /** The newest segment archived, kept in the spool as pg_receivewal's marker (not part of the queue). */
  marker: string | undefined;
}

export class SpoolPusher {
  private readonly inFlight = new Map<string, Promise<void>>();
  /**
   * Files a push removed from the spool: a look that listed the spool just before the removal
   * must not push them again (that push would find no file, and count as a failure). Forgotten
   * once a look no longer lists them.
   */
  private readonly released = new Set<string>();
  private readonly retries = new Map<string, { attempts: number; notBefore: number }>();
  /** Segments pushed whose file stays as the marker: only the newest one is kept. */
  private readonly kept = new Set<string>();
  private waiting: SpooledWal[] = [];
  /** The spool's completed files already looked at (completedFiles). */
  private readonly known = new Map<string, SpooledWal>();
  private batchFailures = 0;
  private generation: { app: App; controller: AbortController };
  private stopped = false;
  private scanning: Promise<void> | undefined;
  private again = false;
  private last: QueueState['lastArchived'];
  private lastError: QueueState['lastError'];

  private readonly dir: string;

  constructor(
    private readonly app: App,
    private readonly paths: Pick<SpoolPaths, 'dir' | 'compressDir'>,
    private readonly parallel: number,
    private readonly onFailure: (err: BackupError, wal: string) => void,
    private readonly onArchived: (wal: string) => void,
  ) {
    this.dir = paths.dir;
    this.generation = this.newGeneration();
  }

  /**
   * Pushes an App of its own, whose remote requests can be cancelled together when one push
   * passes its deadline, without touching the receiver's.
   */
  private newGeneration(): { app: App; controller: AbortController } {
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, this.app.signal]);
    return { app: createApp(this.app.config, this.app.database, { signal, sender: undefined }), controller };
  }

  /**
   * Looks at the spool and starts pushes, up to `parallel` at once, the oldest file first. Calls
   * while a look is under way make one more look after it, not one each.
   */
  scan(): Promise<void> {
    if (this.scanning) {
      this.again = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.again = false;
        await this.scanOnce();
      } while (this.again && !this.stopped);
    })().finally(() => (this.scanning = undefined));
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    if (this.stopped) return;
    const all = await completedFiles(this.dir, this.known);
    const listed = new Set(all.map((f) => f.name));
    for (const name of this.released) if (!listed.has(name)) this.released.delete(name);
    this.waiting = all.filter((f) => !this.kept.has(f.name) && !this.released.has(f.name));
    // a new batch once half the pushes at most run: behind, the files share a zstd run
    if (this.inFlight.size > this.parallel / 2) return;
    const now = Date.now();
    const batch = this.waiting
      .filter((f) => !this.inFlight.has(f.name) && (this.retries.get(f.name)?.notBefore ?? 0) <= now)
      .slice(0, this.parallel - this.inFlight.size)
      .map((f) => f.name);
    if (batch.length === 0) return;
    const compressed = this.compress(batch);
    for (const wal of batch) {
      const p = this.push(wal, compressed).finally(() => {
        this.inFlight.delete(wal);
        void this.scan().catch(() => undefined);
      });
      this.inFlight.set(wal, p);
    }
  }

  /**
   * The batch through the zstd program at once; undefined (each file through the whole chain)
   * when not the zstd program, or when that run fails. After BATCH_FAILURES failures in a row (a
   * zstd older than 1.4.1 has no --output-dir-flat), batches stop for this run, said once.
   */
  private async compress(batch: string[]): Promise<Map<string, Buffer> | undefined> {
    const { app, controller } = this.generation;
    if (this.batchFailures >= BATCH_FAILURES) return undefined;
    try {
      const files = batch.map((w) => path.join(this.dir, w));
      const out = await compressWalFiles(app, files, this.paths.compressDir, { timeoutMs: app.config.pitr.pushTimeoutMs, signal: controller.signal });
      this.batchFailures = 0;
      return out;
    } catch (err) {
      if (controller.signal.aborted) return undefined;
      const last = ++this.batchFailures >= BATCH_FAILURES;
      log.warn(`zstd could not compress WAL files together; each is pushed on its own${last ? ' from now on, until the receiver starts again' : ''}`, {
        error: asBackupError(err).message,
      });
      return undefined;
    }
  }

  private async push(wal: string, compressed: Promise<Map<string, Buffer> | undefined>): Promise<void> {
    const gen = this.generation;
    const ms = this.app.config.pitr.pushTimeoutMs;
    const deadline = setTimeout(() => {
      // the requests of every push of this generation end; those not finished are tried again
      if (this.generation === gen) this.generation = this.newGeneration();
      gen.controller.abort();
    }, ms);
    try {
      const file = path.join(this.dir, wal);
      await pushWal(
        gen.app,
        file,
        compressed.then((m) => m?.get(file)),
      );
      if (gen.controller.signal.aborted) throw new BackupError('STALLED', `the push of ${wal} took longer than WAL_PUSH_TIMEOUT_SECONDS (${ms / 1000} s)`);
      this.retries.delete(wal);
      // the newest segment archived: pushes run side by side and end in any order
      this.last = newerSegment(this.last, { wal, at: new Date().toISOString() });
      await this.release(wal);
      this.onArchived(wal);
    } catch (err) {
      let e = asBackupError(err);
      if (gen.controller.signal.aborted && !this.stopped) {
        e = new BackupError('STALLED', `the push of ${wal} did not finish within WAL_PUSH_TIMEOUT_SECONDS (${ms / 1000} s)`, {
          hint: 'A target does not answer: `basement-backup status` shows which. The file stays in the spool and is tried again.',
        });
      }
      const attempts = (this.retries.get(wal)?.attempts ?? 0) + 1;
      this.retries.set(wal, { attempts, notBefore: Date.now() + Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (attempts - 1)) });
      this.lastError = { wal, message: e.message, at: new Date().toISOString() };
      if (!this.stopped) this.onFailure(e, wal);
    } finally {
      clearTimeout(deadline);
    }
  }

  /** Removes a pushed file from the spool, but keeps the newest segment pushed as pg_receivewal's marker. */
  private async release(wal: string): Promise<void> {
    const remove = (name: string) => (this.released.add(name), fsp.rm(path.join(this.dir, name), { force: true }));
    if (walKind(wal) !== 'segment') return remove(wal);
    this.kept.add(wal);
    const newest = [...this.kept].sort().pop()!;
    for (const name of [...this.kept]) {
      if (name === newest) continue;
      this.kept.delete(name);
      await remove(name);
    }
  }

  state(): QueueState {
    const queued = this.waiting.filter((f) => !this.kept.has(f.name));
    const oldest = queued.reduce((m, f) => Math.min(m, f.mtimeMs), Infinity);
    return {
      files: queued.length,
      bytes: queued.reduce((n, f) => n + f.size, 0),
      oldestAgeMs: queued.length === 0 ? 0 : Math.max(0, Date.now() - oldest),
      pushing: this.inFlight.size,
      lastArchived: this.last,
      lastError: this.lastError,
      marker: [...this.kept].sort().pop(),
    };
  }

  /** Starts no more pushes and waits up to `ms` for those running; those cut short are tried at the next start. */
  async stop(ms: number): Promise<void> {
    this.stopped = true;
    const running = Promise.allSettled([...this.inFlight.values()]);
    const timer = new Promise<void>((r) => setTimeout(r, ms).unref());
    await Promise.race([running, timer]);
    if (this.inFlight.size > 0) {
      log.warn(`stopping with ${this.inFlight.size} WAL push(es) unfinished; their files stay in the spool`);
      this.generation.controller.abort();
    }
  }
}
