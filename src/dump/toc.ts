import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { childStdinSink } from '../util/streams';

export interface TocReader {
  /** Write the archive here; what pg_restore no longer reads (everything after the TOC) is discarded. */
  readonly sink: Writable;
  /** pg_restore's exit code and output once it has read the table of contents. */
  result(): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** `pg_restore --list` reading a custom archive from a stream: its table of contents. */
export function readToc(pgRestore: string): TocReader {
  const child = spawn(pgRestore, ['--list'], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(-1));
    child.once('close', (code) => resolve(code));
  });
  return { sink: childStdinSink(child), result: async () => ({ code: await exited, stdout, stderr }) };
}

/** The entries of a TOC listing, e.g. "TABLE DATA public users postgres" of "3345; 0 16390 TABLE DATA public users postgres". */
export function tocEntries(listing: string): { line: string; entry: string }[] {
  const out: { line: string; entry: string }[] = [];
  for (const line of listing.split('\n')) {
    const entry = /^\d+; \d+ \d+ (.*)$/.exec(line)?.[1];
    if (entry !== undefined) out.push({ line, entry });
  }
  return out;
}
