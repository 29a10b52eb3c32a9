import type TableType from 'cli-table3';
import { ERROR_CODES, type BackupError } from '../errors';
import { redact } from '../redact';

/** The width a wide table is fitted to: the terminal's, or off a terminal (a pipe, a file) 120 columns. */
export function tableWidth(): number {
  return process.stdout.isTTY && process.stdout.columns > 0 ? process.stdout.columns : 120;
}

/**
 * Columns a wide table may narrow to fit: by index, in the order they give way, each first down to
 * its floor; `cut`: its text is cut with "…" (one line per row), else wrapped onto more lines.
 */
export interface Fit {
  width: number;
  shrink: { column: number; floor: number; cut?: boolean }[];
}

/**
 * Prints a table with a border on stdout, as every command prints them. With `fit`, the columns
 * it names are narrowed (wrapped, or cut) until the table fits `fit.width`: each in turn down to
 * its floor, then, if it still does not fit, down to its header's width. The other columns keep
 * their width.
 */
export function printTable(head: string[], rows: (string | number)[][], fit?: Fit): void {
  const cells = rows.map((r) => r.map(String));
  const colWidths = fit ? fittedWidths(head, cells, fit) : [];
  const cut = new Set(fit?.shrink.filter((c) => c.cut).map((c) => c.column));
  // loaded here: most commands print no table (~8 ms of every start)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Table = require('cli-table3') as typeof TableType;
  const t = new Table({ head, colWidths, wordWrap: fit !== undefined, style: { head: [], border: [] } });
  for (const r of cells) t.push(r.map((content, i) => (cut.has(i) ? { content, wordWrap: false } : content)));
  process.stdout.write(t.toString() + '\n');
}

/** Each column's width with its padding, narrowed as `fit` allows until the table fits. */
function fittedWidths(head: string[], rows: string[][], fit: Fit): number[] {
  const length = (cell: string) => Math.max(...cell.split('\n').map((l) => [...l].length));
  const widths = head.map((h, i) => Math.max(length(h), ...rows.map((r) => length(r[i] ?? ''))) + 2);
  const over = () => widths.reduce((a, b) => a + b, 0) + head.length + 1 - fit.width;
  for (const floorOf of [(c: Fit['shrink'][number]) => c.floor, () => 0]) {
    for (const c of fit.shrink) {
      const least = Math.max(floorOf(c), [...head[c.column]!].length) + 2;
      if (over() > 0) widths[c.column] = Math.max(least, widths[c.column]! - over());
    }
  }
  return widths;
}

/** One clear block for an expected error: what, and what to do. No stack trace. */
export function printError(e: BackupError & { all?: BackupError[] }): void {
  const all = e.all && e.all.length > 0 ? e.all : [e];
  for (const err of all) {
    process.stderr.write(redact(`basement-backup: ${ERROR_CODES[err.code].title}: ${err.message}\n`));
    if (err.hint) process.stderr.write(redact(`  fix: ${err.hint}\n`));
  }
}

/** Prints a value as indented JSON on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Prints a warning on stderr; the command goes on. */
export function printWarning(message: string): void {
  process.stderr.write(`warning: ${message}\n`);
}
