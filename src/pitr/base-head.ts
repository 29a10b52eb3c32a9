/**
 * The start of a base backup that pg_basebackup compressed itself, from a primary: its
 * backup_label, the first member of the tar, read off the head of the stream. A tap passes the
 * compressed stream on untouched and copies its first bytes to the zstd program, whose output
 * is watched until backup_label has passed; then the copy stops and zstd is ended. Only the first
 * megabytes are decompressed (the whole side branch cost 0.6 s of a 2.3 s backup: docs/pitr.md,
 * "Speed").
 */
import { Transform } from 'node:stream';
import { BackupError } from '../errors';
import { runProgram, type FilterProgram } from '../pg/program';
import { labelStart } from '../wal/base-range';
import { tarWatch } from '../wal/base-tar';

/** backup_label comes first, a few hundred bytes: this much of the compressed stream holds it many times over. */
const HEAD_MAX = 16 * 1024 * 1024;

export interface HeadLabel {
  /** A pass-through stage for the compressed stream. */
  tap: Transform;
  /** Where the backup's WAL starts, once backup_label has passed and zstd has ended; an error when the stream held no label. */
  start: Promise<{ lsn: string; timeline: number }>;
}

export function tarHeadLabel(zstd: FilterProgram, signal: AbortSignal): HeadLabel {
  const unzstd = runProgram({ name: zstd.name, file: zstd.file, args: ['-dc'], env: zstd.env, input: true, signal });
  const watch = tarWatch();
  let fed = 0;
  let feeding = true;
  let flushed = false;
  const stopFeeding = () => {
    if (!feeding) return;
    feeding = false;
    unzstd.stdin.end();
  };
  const found = new Promise<string | undefined>((resolve) => {
    watch.stage.on('data', () => {
      const label = watch.facts().label;
      if (label === undefined) return;
      resolve(label);
      stopFeeding();
      // what zstd still has is of no use
      unzstd.stop();
    });
    // all of zstd's output has been watched (not merely zstd ended: its last output may still be on the way)
    watch.stage.once('end', () => resolve(watch.facts().label));
    watch.stage.once('error', () => resolve(watch.facts().label));
  });
  const start = (async () => {
    const [label, exit] = await Promise.all([found, unzstd.exited]);
    const at = labelStart(label);
    if (at) return at;
    const why = label !== undefined ? ': its backup_label names no WAL start' : exit.code ? `: ${unzstd.firstError() ?? `zstd exited with ${exit.code}`}` : '';
    throw new BackupError('BASEBACKUP_FAILED', `the base backup cannot be used: no WAL start at the head of pg_basebackup's compressed stream${why}`, {
      hint: 'Nothing of it was kept. Run basebackup again; if it repeats, read the server log.',
    });
  })();
  start.catch(() => undefined);
  unzstd.stdout.pipe(watch.stage).resume();
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (feeding) {
        fed += chunk.length;
        unzstd.stdin.write(chunk);
        if (fed >= HEAD_MAX) stopFeeding();
      }
      cb(null, chunk);
    },
    flush(cb) {
      flushed = true;
      stopFeeding();
      cb();
    },
    destroy(err, cb) {
      // the stream failed or was stopped before its end: zstd ends with it (after the end, it finishes what it was given)
      if (!flushed) {
        stopFeeding();
        unzstd.stop();
      }
      cb(err);
    },
  });
  return { tap, start };
}
