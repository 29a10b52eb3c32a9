import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors';
import { pm2Control } from '../../src/restore/pm2';

const dirs: string[] = [];
/** What Settings.pm2Env would hold. */
const ENV = { PATH: process.env.PATH, HOME: os.tmpdir() };
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A stand-in for the pm2 CLI: a shell script with this body. */
function fakePm2(body: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-pm2-'));
  dirs.push(dir);
  const bin = path.join(dir, 'pm2');
  fs.writeFileSync(bin, `#!/bin/sh\n${body}\n`, { mode: 0o700 });
  return bin;
}

async function failure(p: Promise<unknown>): Promise<BackupError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackupError);
  expect((err as BackupError).code).toBe('APP_CONTROL');
  expect((err as BackupError).exitCode).toBe(34);
  return err as BackupError;
}

describe('pm2Control', () => {
  it('lists the apps, also after the lines pm2 prints when it starts its daemon', async () => {
    const bin = fakePm2(
      `printf '\\033[32m[PM2] \\033[39mSpawning PM2 daemon with pm2_home=/x\\n\\033[32m[PM2] \\033[39mPM2 Successfully daemonized\\n'\n` +
        `printf '[{"pid":1,"name":"shop","pm_id":0,"pm2_env":{"status":"online","env":{"SECRET":"x"}}},{"name":"worker","pm_id":3,"pm2_env":{"status":"stopped"}}]'`,
    );
    expect(await pm2Control(bin, ENV).list()).toEqual([
      { name: 'shop', id: 0, status: 'online' },
      { name: 'worker', id: 3, status: 'stopped' },
    ]);
  });

  it('strips the colour codes pm2 prints from its errors', async () => {
    const bin = fakePm2(`printf '\\033[31m[PM2][ERROR] \\033[39mProcess or Namespace shop not found\\n' >&2; exit 1`);
    const e = await failure(pm2Control(bin, ENV).stop('shop'));
    expect(e.message).toBe('pm2 stop shop failed: [PM2][ERROR] Process or Namespace shop not found');
    expect(e.hint).toContain('pm2 list');
  });

  it('a pm2 that is not there: how to install it', async () => {
    const missing = await failure(pm2Control(path.join(os.tmpdir(), 'bb-no-such-dir', 'pm2'), ENV).list());
    expect(missing.message).toMatch(/^pm2 jlist failed: .*bb-no-such-dir\/pm2 was not found$/);
    expect(missing.hint).toContain('npm install -g pm2');
    expect(missing.hint).toContain('PM2_BIN');
    const notOnPath = await failure(pm2Control('bb-no-such-pm2', ENV).list());
    expect(notOnPath.message).toBe('pm2 jlist failed: bb-no-such-pm2 was not found on the PATH');
  });

  it('a pm2 that does not answer is given up on at the deadline', async () => {
    const bin = fakePm2('exec sleep 30');
    const started = Date.now();
    const e = await failure(pm2Control(bin, ENV, { listMs: 300, controlMs: 300 }).list());
    expect(e.message).toBe('pm2 jlist did not finish within 0.3s');
    expect(Date.now() - started).toBeLessThan(5000);
    const bad = await failure(pm2Control(fakePm2(`echo 'not json'`), ENV).list());
    expect(bad.message).toBe('pm2 jlist printed no list of apps: not json');
  });

  it('a pm2 ended by a signal says so (not "did not finish"), and runs in a session of its own: a Ctrl-C to ours does not reach it', async () => {
    const e = await failure(pm2Control(fakePm2('kill -TERM $$'), ENV).stop('shop'));
    expect(e.message).toBe('pm2 stop shop was ended by SIGTERM');
    const ids = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bb-pm2-sid-')), 'ids');
    dirs.push(path.dirname(ids));
    await pm2Control(fakePm2(`ps -o sid=,pgid= -p $$ > ${ids}; echo '[]'`), ENV).list();
    const [sid, pgid] = fs.readFileSync(ids, 'utf8').trim().split(/\s+/).map(Number);
    expect(sid).not.toBe(
      Number(
        execFileSync('ps', ['-o', 'sid=', '-p', String(process.pid)])
          .toString()
          .trim(),
      ),
    );
    expect(pgid).not.toBe(process.pid);
  });

  it('pm2 sees only the environment it is given: PM2_HOME, not the secrets of ours', async () => {
    const seen = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bb-pm2-env-')), 'env');
    dirs.push(path.dirname(seen));
    const bin = fakePm2(`env > ${seen}; echo '[]'`);
    process.env.BB_TEST_SECRET = 'hunter2';
    try {
      expect(await pm2Control(bin, { ...ENV, PM2_HOME: '/srv/pm2' }).list()).toEqual([]);
    } finally {
      delete process.env.BB_TEST_SECRET;
    }
    const lines = fs.readFileSync(seen, 'utf8').split('\n');
    expect(lines).toContain('PM2_HOME=/srv/pm2');
    expect(lines.join('\n')).not.toContain('hunter2');
  });
});
