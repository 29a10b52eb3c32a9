import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { prefetchDir, prefetcherPid, stopOrphanPrefetcher, stopPrefetcher } from '../../src/pitr/prefetcher';
import { findTempDirs, privateTempDir, removeTempLeftovers } from '../../src/restore/temp-dirs';
import { tempDir } from '../helpers/temp';

/** A process whose command line is `… wal-prefetch <spool>`, as the prefetcher's is, that runs until stopped (ignoring SIGTERM when told). */
async function lookalike(spool: string, ignoreTerm = false): Promise<ChildProcess> {
  const body = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} setInterval(() => {}, 1000); console.log('ready')`;
  const child = spawn(process.execPath, ['-e', body, 'wal-prefetch', spool], { stdio: ['ignore', 'pipe', 'ignore'] });
  // once it has said so, its SIGTERM handler is in place
  await new Promise((resolve) => child.stdout.once('data', resolve));
  child.stdout.resume();
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  return child;
}

function commandLine(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

describe('the WAL prefetcher as a process', () => {
  it('is found by its pid file only when that pid is the prefetcher of that spool (not a reused pid, not another spool’s)', async () => {
    const dir = tempDir();
    const spool = prefetchDir(path.join(dir, 'data'));
    fs.mkdirSync(spool);
    expect(prefetcherPid(spool)).toBeUndefined();
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    onTestFinished(() => {
      other.kill('SIGKILL');
    });
    fs.writeFileSync(path.join(spool, '.prefetch.pid'), String(other.pid));
    expect(prefetcherPid(spool)).toBeUndefined();
    const elsewhere = await lookalike(path.join(dir, 'other.wal-prefetch'));
    fs.writeFileSync(path.join(spool, '.prefetch.pid'), String(elsewhere.pid));
    expect(prefetcherPid(spool)).toBeUndefined();
    const mine = await lookalike(spool);
    fs.writeFileSync(path.join(spool, '.prefetch.pid'), String(mine.pid));
    expect(prefetcherPid(spool)).toBe(mine.pid);
    // a pid file that names another process: nothing is stopped
    fs.writeFileSync(path.join(spool, '.prefetch.pid'), String(other.pid));
    expect(stopOrphanPrefetcher(dir)).toBe(true);
    expect(exited(other)).toBe(false);
  });

  it('stopPrefetcher returns once it has exited, SIGKILL for one that ignores SIGTERM', async () => {
    const dir = tempDir();
    const spool = prefetchDir(path.join(dir, 'data'));
    const polite = await lookalike(spool);
    await stopPrefetcher(polite.pid!, spool);
    // exited when it returns (gone, or a zombie not yet reaped: no command line)
    expect(commandLine(polite.pid!)).toBe('');
    const stubborn = await lookalike(spool, true);
    const stubbornGone = new Promise<NodeJS.Signals | null>((resolve) => stubborn.once('exit', (_code, sig) => resolve(sig)));
    const started = Date.now();
    await stopPrefetcher(stubborn.pid!, spool);
    expect(await stubbornGone).toBe('SIGKILL');
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_000);
  }, 30_000);

  it('a killed drill’s orphan prefetcher is stopped before its directory is removed', async () => {
    const temp = tempDir();
    const scratch = privateTempDir(temp, 'verify', 'app');
    // the drill's owner record names a process that is gone: this directory is a leftover
    const record = path.join(scratch, 'owner.json');
    fs.writeFileSync(record, JSON.stringify({ ...JSON.parse(fs.readFileSync(record, 'utf8')), pid: 2 ** 22 + 1, pid_start: '1' }));
    const spool = prefetchDir(path.join(scratch, 'data'));
    fs.mkdirSync(spool, { recursive: true });
    const orphan = await lookalike(spool);
    const gone = new Promise((resolve) => orphan.once('exit', resolve));
    fs.writeFileSync(path.join(spool, '.prefetch.pid'), String(orphan.pid));
    expect(findTempDirs(temp).map((t) => t.running)).toEqual([false]);
    expect(removeTempLeftovers(temp).map((t) => t.path)).toEqual([scratch]);
    await gone;
    expect(fs.existsSync(scratch)).toBe(false);
  });
});
