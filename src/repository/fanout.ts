import { Writable } from 'node:stream';
import { BackupError, asBackupError } from '../errors';
import { storageError } from '../storage/errors';

export interface Branch {
  name: string;
  stream: Writable;
  /** A branch that only observes (a check): it never keeps the fan-out going on its own. */
  optional?: boolean;
}

function settle(stream: Writable, event: 'drain' | 'finish'): Promise<Error | undefined> {
  return new Promise((resolve) => {
    const done = (err?: Error) => {
      stream.off(event, ok);
      stream.off('error', done);
      stream.off('close', closed);
      resolve(err);
    };
    const ok = () => done();
    const closed = () => done(stream.writableFinished ? undefined : new Error('closed before the end of the data'));
    stream.once(event, ok);
    stream.once('error', done);
    stream.once('close', closed);
  });
}

/** The error for "no storage target took the backup": the only failure itself, or all of them named. */
export function allTargetsFailed(failed: Map<string, BackupError>): BackupError {
  const entries = [...failed].filter(([n]) => n !== CHECK_BRANCH);
  if (entries.length === 1) return entries[0]![1];
  const [name, first] = entries[0] ?? ['?', new BackupError('STORAGE', 'no storage target')];
  return new BackupError(first.code, `no storage target could take the backup (${entries.map(([n]) => n).join(', ')}); ${name}: ${first.message}`, {
    hint: first.hint,
    cause: first,
  });
}

/** The name of the branch that checks the archive while it streams. */
export const CHECK_BRANCH = '(check)';

/** The name of the branch that carries the data through the stages to the targets' own fan-out. */
export const STORED_BRANCH = '(targets)';

/**
 * Writes one stream to several destinations at once, at the pace of the slowest, without
 * buffering more than each destination's own buffer. A destination that fails is dropped and
 * its error kept (`failures`); the others go on. Only when every destination has failed does
 * the fan-out itself fail.
 */
export class Fanout extends Writable {
  private live: Branch[];
  readonly failures = new Map<string, BackupError>();

  constructor(branches: Branch[]) {
    super({ highWaterMark: 1024 * 1024 });
    this.live = [...branches];
    for (const b of branches) b.stream.on('error', (err) => this.drop(b, err));
  }

  private drop(b: Branch, err: unknown): void {
    if (!this.failures.has(b.name)) {
      const e = err instanceof BackupError || !(err as NodeJS.ErrnoException).code ? asBackupError(err) : storageError('writing the backup to', b.name, err);
      this.failures.set(b.name, e);
    }
    this.live = this.live.filter((x) => x !== b);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const waits: Promise<void>[] = [];
    for (const b of this.live) {
      if (!b.stream.write(chunk)) {
        waits.push(settle(b.stream, 'drain').then((err) => (err ? this.drop(b, err) : undefined)));
      }
    }
    const finish = () => cb(this.noneLeft() ? allTargetsFailed(this.failures) : null);
    if (waits.length === 0) finish();
    else void Promise.all(waits).then(finish);
  }

  override _final(cb: (err?: Error | null) => void): void {
    const branches = [...this.live];
    void Promise.all(
      branches.map(async (b) => {
        const done = settle(b.stream, 'finish');
        b.stream.end();
        const err = await done;
        if (err) this.drop(b, err);
      }),
    ).then(() => cb(this.noneLeft() ? allTargetsFailed(this.failures) : null));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // After a normal end (autoDestroy follows 'finish') a branch may still be flushing what it
    // holds to its own destination (a compression or encryption stage): leave it to finish.
    if (err || !this.writableFinished) for (const b of this.live) b.stream.destroy(err ?? undefined);
    cb(err);
  }

  /** Every branch that holds the data (not only observes it) has failed. */
  private noneLeft(): boolean {
    return !this.live.some((b) => !b.optional);
  }
}
