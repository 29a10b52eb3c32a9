import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DUMP, backupEnv, backupFiles, listJson, runCli, smtpEnv, tempDir } from '../helpers/cli';
import { createWebserverDb, pgInfo } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';

/**
 * A PG_BIN_DIR whose pg_dump runs the real pg_dump and then passes on its output, whole or cut
 * right after the table of contents, and exits 0 either way. This is fault injection around the
 * real tool, not a mock: it produces exactly what a pg_dump that stopped writing after its TOC
 * (a killed pipe, a bug, a full disk on a remote pipe) would leave while reporting success,
 * which cannot be provoked reliably otherwise. The TOC's end is found without basement-backup's
 * reader: it is where the first data block starts (its type byte 1 and the dumpId, as a sign
 * byte and four little-endian bytes, of the first TABLE DATA entry that `pg_restore --list`
 * shows). pg_restore, psql and pg_dumpall are symlinks to the real ones.
 */
function pgBinDir(dir: string, mode: 'whole' | 'cut-after-toc'): string {
  const real = pgInfo().binDir;
  const bin = path.join(dir, `bin-${mode}`);
  fs.mkdirSync(bin);
  for (const tool of ['pg_restore', 'psql', 'pg_dumpall']) fs.symlinkSync(path.join(real, tool), path.join(bin, tool));
  const script = `#!${process.execPath}
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const REAL = ${JSON.stringify(real)};
const MODE = ${JSON.stringify(mode)};
const args = process.argv.slice(2);
const dump = spawnSync(path.join(REAL, 'pg_dump'), args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 30, timeout: 120000 });
if (dump.status !== 0) process.exit(dump.status ?? 1);
let out = dump.stdout;
if (MODE === 'cut-after-toc' && !args.includes('--version')) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-cut-'));
  fs.writeFileSync(path.join(tmp, 'a.dump'), out);
  const list = spawnSync(path.join(REAL, 'pg_restore'), ['--list', path.join(tmp, 'a.dump')], { encoding: 'utf8', timeout: 60000 });
  fs.rmSync(tmp, { recursive: true, force: true });
  const id = Number(/^(\\d+); \\d+ \\d+ TABLE DATA /m.exec(list.stdout)[1]);
  const at = out.indexOf(Buffer.from([1, 0, id & 255, (id >> 8) & 255, (id >> 16) & 255, id >>> 24]));
  if (at < 0) process.exit(99);
  out = out.subarray(0, at);
}
process.stdout.write(out, () => process.exit(0));
`;
  fs.writeFileSync(path.join(bin, 'pg_dump'), script, { mode: 0o755 });
  return bin;
}

describe('a pg_dump that exits 0 after writing only its table of contents', () => {
  it('fails the backup with exit 21 naming the missing data, keeps nothing, alerts', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const base = backupEnv(db, dir, smtpEnv(sink.port));

    // the wrapper itself changes nothing: with the whole output the backup is good
    const good = await runCli(['backup'], { ...base, PG_BIN_DIR: pgBinDir(dir, 'whole') });
    expect(good.code, good.stderr).toBe(0);
    const before = backupFiles(dir);
    expect(before.filter((n) => n.endsWith(DUMP))).toHaveLength(1);

    const cut = await runCli(['backup'], { ...base, PG_BIN_DIR: pgBinDir(dir, 'cut-after-toc') });
    expect(cut.code, cut.stderr).toBe(21);
    expect(cut.stderr).toMatch(/the archive ends before its last data block: no data for table public\.\w+/);
    expect(cut.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    expect(cut.stdout).not.toContain('Backup completed');

    // nothing of it is kept: no new file, not even a hidden temporary one
    expect(backupFiles(dir)).toEqual(before);
    expect(await listJson(base)).toHaveLength(1);

    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toBe(`[basement-backup] FAILED: ${db} backup on ${os.hostname()}`);
    expect(mail!.text).toMatch(/the dump failed its checks \(DUMP_INVALID\)/);
    expect(mail!.text).toMatch(/ends before its last data block: no data for table public\./);
  });
});
