/**
 * Prefetch for recovery: PostgreSQL asks for one WAL file at a time and waits for it; a Node start
 * and a download per 16 MB segment would make a long recovery crawl. While recovery runs, one
 * background `wal-prefetch` keeps the next segments of the timeline fetched (several at once,
 * each checked) into a spool directory outside the data directory; restore_command moves a file
 * found there into place with a shell `mv`, and starts `wal-fetch` only for a miss.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { App } from '../app';
import { asBackupError } from '../errors';
import { log } from '../logger';
import { segmentName, segmentNumber, walKind } from '../wal/segment';
import { fetchWal } from './fetch';
import { forgetPrefetcher } from './prefetcher';

/** How many segments are kept fetched ahead of the one PostgreSQL asked for last. */
export const PREFETCH_AHEAD = 8;
/** How many are fetched at once. */
const PARALLEL = 3;
/** The prefetcher ends when PostgreSQL has asked for nothing new for this long (recovery over). */
const IDLE_MS = 60_000;
const SEGMENT_SIZE = 16 * 1024 * 1024;

const WANTED = '.wanted';

/** Records the segment PostgreSQL asked for last (a miss), for the prefetcher to read ahead of. */
export async function noteWanted(spool: string, wal: string): Promise<void> {
  fs.mkdirSync(spool, { recursive: true, mode: 0o700 });
  await fsp.writeFile(path.join(spool, WANTED), wal, { mode: 0o600 });
}

/** The segments after `wal` on its timeline, `count` of them. */
export function segmentsAfter(wal: string, count: number): string[] {
  const tli = parseInt(wal.slice(0, 8), 16);
  const n = segmentNumber(wal, SEGMENT_SIZE);
  return Array.from({ length: count }, (_, i) => segmentName(tli, (n + BigInt(i + 1)) * BigInt(SEGMENT_SIZE), SEGMENT_SIZE));
}

/**
 * Runs the prefetcher for `spool` until PostgreSQL has asked for nothing new for a minute, or the
 * archive has no next segment: keeps PREFETCH_AHEAD segments after the last one asked for (or
 * taken from the spool) fetched into it.
 */
export async function runPrefetcher(app: App, spool: string): Promise<void> {
  let lastWanted = '';
  let lastChange = Date.now();
  const fetched = new Set<string>();
  try {
    // pitr-restore removes the spool once recovery is over
    while (Date.now() - lastChange < IDLE_MS && !app.signal.aborted && fs.existsSync(spool)) {
      const wanted = await fsp.readFile(path.join(spool, WANTED), 'utf8').catch(() => '');
      const present = new Set((await fsp.readdir(spool)).filter((f) => walKind(f) === 'segment'));
      // a file taken by restore_command is gone from the spool: PostgreSQL moved on past it
      const taken = [...fetched].filter((f) => !present.has(f)).sort();
      const base =
        [wanted, ...taken]
          .filter((w) => walKind(w) === 'segment')
          .sort()
          .pop() ?? '';
      if (base !== lastWanted) {
        lastWanted = base;
        lastChange = Date.now();
      }
      const todo = base ? segmentsAfter(base, PREFETCH_AHEAD).filter((s) => !present.has(s) && !fetched.has(s)) : [];
      if (todo.length === 0) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const batch = todo.slice(0, PARALLEL);
      const got = await Promise.all(batch.map((s) => fetchInto(app, s, spool)));
      batch.forEach((s, i) => got[i] && fetched.add(s));
      if (got.some((g) => !g)) break; // the end of the archive (or a failure): wal-fetch deals with it when asked
    }
  } finally {
    forgetPrefetcher(spool);
  }
}

async function fetchInto(app: App, wal: string, spool: string): Promise<boolean> {
  try {
    return (await fetchWal(app, wal, path.join(spool, wal), { retryDelayMs: 200 })).delivered;
  } catch (err) {
    // the spool removed under it: recovery is over, nothing failed
    if (fs.existsSync(spool)) log.warn('prefetch failed', { wal, error: asBackupError(err).message });
    return false;
  }
}
