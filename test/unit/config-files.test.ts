import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { completeConfigFiles } from '../../src/pitr/config-files';

// A base backup of Debian's packaged PostgreSQL has no postgresql.conf, pg_hba.conf or pg_ident.conf
// (they live in /etc/postgresql/…): a recovered copy would not start without them.
describe('completeConfigFiles', () => {
  it('writes the files a data directory lacks (0600, local logins only), and never touches one that is there', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-conf-'));
    try {
      fs.writeFileSync(path.join(dir, 'pg_hba.conf'), 'the original\n');
      expect(await completeConfigFiles(dir)).toEqual(['postgresql.conf', 'pg_ident.conf']);
      expect(fs.readFileSync(path.join(dir, 'pg_hba.conf'), 'utf8')).toBe('the original\n');
      expect(fs.readFileSync(path.join(dir, 'postgresql.conf'), 'utf8')).toContain("listen_addresses = 'localhost'");
      for (const f of ['postgresql.conf', 'pg_ident.conf']) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
      fs.rmSync(path.join(dir, 'pg_hba.conf'));
      expect(await completeConfigFiles(dir)).toEqual(['pg_hba.conf']);
      const hba = fs.readFileSync(path.join(dir, 'pg_hba.conf'), 'utf8');
      expect(hba).toMatch(/^host\s+all\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256$/m);
      expect(hba).not.toMatch(/trust|0\.0\.0\.0/);
      expect(await completeConfigFiles(dir)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
