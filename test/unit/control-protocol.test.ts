import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config';
import { configHashes, controlSocketPath, differing, errorFromWire, errorToWire, lineReader } from '../../src/daemon/control-protocol';
import { BackupError } from '../../src/errors';

const CWD = '/srv/app';
const VARS = { DB_NAME: 'shop', DB_PASSWORD: 'pw-never-sent-as-is' };
const hashesOf = (vars: Record<string, string>, env: NodeJS.ProcessEnv = {}) => {
  const c = parseConfig(vars, CWD, env);
  return configHashes(c, c.databases[0]!);
};

describe("the daemon's control socket", () => {
  it('the same configuration read by two processes with other environments matches; a changed setting is named', () => {
    const daemon = hashesOf(VARS, { PATH: '/usr/bin', pm_id: '3', LANG: 'C.UTF-8' });
    const command = hashesOf(VARS, { PATH: '/usr/local/bin:/usr/bin', TERM: 'xterm' });
    expect(differing(daemon, command)).toEqual([]);
    expect(differing(daemon, hashesOf({ ...VARS, BASEBACKUP_WAL_WAIT_SECONDS: '90' }))).toEqual(['pitr']);
    expect(differing(daemon, hashesOf({ ...VARS, DB_PASSWORD: 'another' }))).toEqual(['database']);
    expect(differing(daemon, hashesOf({ ...VARS, BACKUP_DIR: '/srv/other' }))).toEqual(expect.arrayContaining(['backupDir', 'database', 'stateDir']));
    // what crosses the socket holds no setting's value, only short hashes
    expect(JSON.stringify(daemon)).not.toContain('pw-never-sent-as-is');
    expect(Object.values(daemon).every((h) => /^[0-9a-f]{16}$/.test(h))).toBe(true);
  });

  it('a state directory too long for a socket path has none', () => {
    expect(controlSocketPath('/srv/app/backups/.basement-backup')).toBe('/srv/app/backups/.basement-backup/daemon.sock');
    expect(controlSocketPath('/' + 'd'.repeat(100))).toBeUndefined();
  });

  it('errors cross it with their code, hint and detail; an unknown code becomes INTERNAL', () => {
    const e = errorFromWire(errorToWire(new BackupError('LOCKED', 'a base backup of shop runs', { hint: 'wait', detail: 'pid 7' })));
    expect([e.code, e.message, e.hint, e.detail, e.exitCode]).toEqual(['LOCKED', 'a base backup of shop runs', 'wait', 'pid 7', 3]);
    expect(errorFromWire({ code: 'NO_SUCH_CODE', message: 'x' }).code).toBe('INTERNAL');
  });

  it('reads JSON lines across chunks; a line that is not JSON stops it', () => {
    const got: unknown[] = [];
    const bad: string[] = [];
    const feed = lineReader(
      (v) => got.push(v),
      (l) => bad.push(l),
    );
    feed(Buffer.from('{"a":1}\n{"b"'));
    feed(Buffer.from(':2}\n\n'));
    expect(got).toEqual([{ a: 1 }, { b: 2 }]);
    feed(Buffer.from('not json\n{"c":3}\n'));
    expect(bad).toEqual(['not json']);
    expect(got).toHaveLength(2);
  });
});
