import { Writable } from 'node:stream';
import { BackupError, asBackupError } from '../errors';
import { storageError } from './errors';

export interface Branch {
  name: string;
  stream: Writable;
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

  private allFailed(): Error {
    const [name, err] = [...this.failures.entries()][0] ?? ['?', new BackupError('STORAGE', 'no destination')];
    return new BackupError(err.code, `every storage target failed; ${name}: ${err.message}`, { hint: err.hint, cause: err });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const waits: Promise<void>[] = [];
    for (const b of this.live) {
      if (!b.stream.write(chunk)) {
        waits.push(settle(b.stream, 'drain').then((err) => (err ? this.drop(b, err) : undefined)));
      }
    }
    const finish = () => cb(this.live.length === 0 ? this.allFailed() : null);
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
    ).then(() => cb(this.live.length === 0 ? this.allFailed() : null));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    for (const b of this.live) b.stream.destroy();
    cb(err);
  }

  /** Names of the destinations that received everything. */
  get succeeded(): string[] {
    return this.live.map((b) => b.name);
  }
}
