import type { Writable } from 'node:stream';
import type { PgBinaries } from '../pg/binaries';
import { outputOf, runProgram } from '../pg/program';

export interface TocReader {
  /** Write the archive here; what pg_restore no longer reads (everything after the TOC) is discarded. */
  readonly sink: Writable;
  /** pg_restore's exit code (-1: it could not run), its listing, and its stderr (redacted) once it has read the table of contents. */
  result(): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** `pg_restore --list` reading a custom archive from a stream: its table of contents. */
export function readToc(bins: PgBinaries): TocReader {
  // It connects to nothing: only PATH.
  const list = runProgram({ name: 'pg_restore', file: bins.path('pg_restore'), args: ['--list'], env: { PATH: bins.env.PATH ?? '' }, input: true });
  const output = outputOf(list);
  return {
    sink: list.stdin,
    result: async () => {
      const { code, error, stdout } = await output;
      return { code: error ? -1 : code, stdout, stderr: list.tail.join('\n') };
    },
  };
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
