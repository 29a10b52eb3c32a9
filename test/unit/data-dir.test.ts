import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dataDirSharesDisk } from '../../src/monitor/data-dir';

describe("dataDirSharesDisk (the disk projection counts PostgreSQL's growth)", () => {
  const here = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-datadir-'));
  const beside = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-datadir-'));

  it("true for a server on this machine whose data directory is on the target's filesystem", () => {
    for (const host of ['localhost', '127.0.0.1', '::1', '/var/run/postgresql']) expect(dataDirSharesDisk(host, here, beside)).toBe(true);
  });

  it('false for a remote server, an unknown or missing data directory, or another filesystem', () => {
    expect(dataDirSharesDisk('db.example.internal', here, beside)).toBe(false);
    expect(dataDirSharesDisk('10.0.0.5', here, beside)).toBe(false);
    expect(dataDirSharesDisk('localhost', undefined, beside)).toBe(false);
    expect(dataDirSharesDisk('localhost', path.join(here, 'gone'), beside)).toBe(false);
    // /proc is a filesystem of its own everywhere Linux runs
    expect(dataDirSharesDisk('localhost', '/proc', beside)).toBe(false);
  });
});
