import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { findPgBinaries } from '../../src/pg/binaries';

/** A directory with a pg_dump that says it is `version` and notes each start in `log`. */
function fakePgDump(dir: string, version: string, log: string, name = 'pg_dump'): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, name), `#!/bin/sh\necho "${name} $0" >> "${log}"\necho "pg_dump (PostgreSQL) ${version}"\n`, { mode: 0o755 });
}

describe('findPgBinaries: the newest pg_dump, each real program asked once', () => {
  it.runIf(fs.existsSync('/usr/lib/postgresql'))(
    'asks a program reached twice (a symlinked directory) once, and never Debian’s pg_wrapper beside /usr/lib/postgresql',
    async () => {
      const base = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-bins-'));
      onTestFinished(() => fs.rmSync(base, { recursive: true, force: true }));
      const log = path.join(base, 'started.log');
      fakePgDump(path.join(base, 'real'), '99.1', log);
      fs.symlinkSync(path.join(base, 'real'), path.join(base, 'alias'));
      // /usr/bin/pg_dump on Debian: a link to pg_wrapper
      fakePgDump(path.join(base, 'share'), '99.9', log, 'pg_wrapper');
      fs.mkdirSync(path.join(base, 'wrapped'));
      fs.symlinkSync(path.join(base, 'share', 'pg_wrapper'), path.join(base, 'wrapped', 'pg_dump'));

      const env = { PATH: [path.join(base, 'alias'), path.join(base, 'wrapped'), path.join(base, 'real'), '/usr/bin', '/bin'].join(':') };
      const bins = await findPgBinaries(undefined, env);
      expect(bins.version).toBe('99.1');
      expect(bins.dir).toBe(path.join(base, 'alias'));
      const started = fs.readFileSync(log, 'utf8').trim().split('\n');
      expect(started).toEqual([`pg_dump ${path.join(base, 'alias', 'pg_dump')}`]);
    },
  );
});
