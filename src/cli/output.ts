import Table from 'cli-table3';
import { ERROR_CODES, type BackupError } from '../errors';
import { redact } from '../redact';

/** Prints a table with a border on stdout, as every command prints them. */
export function printTable(head: string[], rows: (string | number)[][]): void {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map(String));
  process.stdout.write(t.toString() + '\n');
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
