/**
 * What the tests of damaged and misdated backups (damaged-backups.test.ts, backup-visibility.test.ts)
 * share: the CLI, listings by file name, backups taken and their manifests rewritten, a byte flipped.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import type { Manifest } from '../../src/repository/manifest';
import { backupFiles, listJson, runCli, type CliResult } from './cli';

export const DAY = 86400_000;

type Listed = Manifest & {
  state: string;
  damage: string | null;
  future_dated: boolean;
  size_anomaly?: { kind: string; median_bytes: number; ratio: number } | null;
};

export function backupsDir(dir: string): string {
  return path.join(dir, 'backups');
}

export async function cli(args: string[], env: Record<string, string>, expected = 0): Promise<CliResult> {
  const r = await runCli(args, env);
  expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expected);
  return r;
}

/** `list --json`, with each file as its name (local targets print the full path). */
export async function listNames(env: Record<string, string>, extra: string[] = []): Promise<Listed[]> {
  const listed = await listJson<Listed>(env, extra);
  return listed.map((x) => ({ ...x, file: x.file && path.basename(x.file) }));
}

/** Takes `n` backups labelled l1..ln and returns their manifests, oldest first. */
export async function takeBackups(env: Record<string, string>, n: number): Promise<Manifest[]> {
  for (let i = 1; i <= n; i++) await cli(['backup', '--label', `l${i}`], env);
  const list = await listNames(env);
  return [...list].reverse();
}

/** Rewrites a stored manifest (as an older backup, or a clock that was wrong, would have written it). */
function rewrite(dir: string, m: Manifest, patch: Partial<Manifest>): Manifest {
  const file = path.join(backupsDir(dir), `${m.id}.manifest.json`);
  const next = { ...(JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest), ...patch };
  fs.writeFileSync(file, JSON.stringify(next, null, 2) + '\n');
  return next;
}

export function ageDays(dir: string, m: Manifest, days: number): Manifest {
  const created = new Date(Date.now() - days * DAY);
  return rewrite(dir, m, { created_at: created.toISOString(), finished_at: created.toISOString() });
}

/** Changes one byte in the middle of a stored file: same size, different content. */
export function flipByte(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const at = Math.floor(fs.fstatSync(fd).size / 2);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0xff;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

export function objectsOf(dir: string, id: string): string[] {
  return backupFiles(dir).filter((n) => n.startsWith(`${id}.`));
}

/**
 * `n` more backups like `m`, cheaply: its files hard-linked under new ids, taken an hour apart
 * before it (manifests without a sequence number, as older versions wrote). With `drillError`,
 * each carries a failed restore drill with that error: DAMAGED. Returns the new ids, newest first.
 */
export function copiesOf(dir: string, m: Manifest, n: number, opts: { drillError?: string; hoursBefore?: number } = {}): string[] {
  const backups = backupsDir(dir);
  const ids: string[] = [];
  for (let i = 1; i <= n; i++) {
    const at = new Date(Date.parse(m.created_at) - ((opts.hoursBefore ?? 0) + i) * 3600_000);
    const id = `${m.id.replace(/_\d{8}T\d{6}Z(_\d+)?$/, '')}_${at
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}Z$/, 'Z')}`;
    const rename = (name: string) => name.replace(m.id, id);
    const copy: Partial<Manifest> = { ...m, id, created_at: at.toISOString(), finished_at: at.toISOString(), file: rename(m.file) };
    delete copy.seq;
    delete copy.verification;
    if (m.roles_file) copy.roles_file = rename(m.roles_file);
    for (const name of [m.file, m.roles_file ?? []].flat()) fs.linkSync(path.join(backups, name), path.join(backups, rename(name)));
    fs.writeFileSync(path.join(backups, `${id}.manifest.json`), JSON.stringify(copy, null, 2) + '\n');
    if (opts.drillError !== undefined) {
      const drill = { kind: 'drill', verified_at: at.toISOString(), ok: false, checksum_ok: true, restore_ms: null, tables_checked: 0, rows_checked: 0 };
      const record = { ...drill, mismatches: [], error: opts.drillError, error_code: 'RESTORE_FAILED', server: 'localhost:5432' };
      fs.writeFileSync(path.join(backups, `${id}.verify.json`), JSON.stringify(record) + '\n');
    }
    ids.push(id);
  }
  return ids;
}
