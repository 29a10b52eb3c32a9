import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import crypto from 'node:crypto';
import { Readable, Transform, Writable } from 'node:stream';

/** A pass-through stage that computes the sha256 and size of what flows through it. */
export function hashTap(onBytes?: (total: number) => void): { stage: Transform; result(): { sha256: string; size: number } } {
  const hash = crypto.createHash('sha256');
  let size = 0;
  const stage = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      onBytes?.(size);
      cb(null, chunk);
    },
  });
  return { stage, result: () => ({ sha256: hash.digest('hex'), size }) };
}

/** A sink that discards everything. */
export function discard(): Writable {
  return new Writable({ highWaterMark: 1024 * 1024, write: (_c, _e, cb) => cb() });
}

/**
 * Feeds a child's stdin while it reads, and afterwards swallows the rest, so the stream feeding
 * it always runs to the end (its checksum is known, the other branches get everything) even when
 * the child stops reading early (`pg_restore --list`, or a restore that failed). Destroying the
 * sink with an error stops the child.
 */
export function childStdinSink(child: ChildProcessWithoutNullStreams): Writable {
  child.stdin.on('error', () => undefined); // EPIPE once the child has stopped reading
  let open = true;
  child.once('close', () => (open = false));
  return new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _e, cb) {
      if (!open || child.stdin.destroyed || child.stdin.writableEnded) return cb();
      if (child.stdin.write(chunk)) return cb();
      const go = () => {
        child.stdin.off('drain', go);
        child.off('close', go);
        cb();
      };
      child.stdin.once('drain', go);
      child.once('close', go);
    },
    final(cb) {
      if (open && !child.stdin.writableEnded) child.stdin.end();
      cb();
    },
    destroy(err, cb) {
      if (err) child.kill('SIGTERM');
      cb(err);
    },
  });
}

/**
 * `src` as a stream that fails with `onIdle()` when `src` delivers nothing for `ms` while its
 * reader is waiting for data. Time spent while the reader is not asking (backpressure: a slow
 * pg_restore) never counts, so only a source that stopped sending trips it. Destroying the
 * result destroys `src`.
 */
export function idleGuard(src: Readable, ms: number, onIdle: () => Error): Readable {
  let timer: NodeJS.Timeout | undefined;
  let wanted = false;
  const stop = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  const arm = () => {
    timer ??= setTimeout(() => out.destroy(onIdle()), ms);
  };
  const pump = () => {
    while (wanted) {
      const chunk = src.read() as Buffer | null;
      if (chunk === null) return arm();
      stop();
      wanted = out.push(chunk);
    }
  };
  const out = new Readable({
    read() {
      wanted = true;
      pump();
    },
    destroy(err, cb) {
      stop();
      src.destroy();
      cb(err);
    },
  });
  src.on('readable', pump);
  src.once('end', () => {
    stop();
    out.push(null);
  });
  src.once('error', (err) => out.destroy(err));
  src.once('close', () => {
    if (!src.readableEnded) out.destroy(new Error('the download was cut off before its end'));
  });
  return out;
}
