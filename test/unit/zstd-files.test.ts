import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findExecutable } from '../../src/pg/program';
import { zstdCompressFiles } from '../../src/compress/zstd-files';
import { BackupError } from '../../src/errors';
import { tempDir } from '../helpers/temp';

const zstdFile = findExecutable('zstd', process.env)!;
const zstd = { name: 'zstd', file: zstdFile, env: { PATH: process.env.PATH ?? '' } };

describe('zstdCompressFiles (the zstd codec over several files in one run)', () => {
  it('gives each file its own frame, which zstd -d opens to the file, and leaves nothing in the directory', async () => {
    const dir = tempDir();
    const out = path.join(dir, 'out');
    fs.mkdirSync(out, { mode: 0o700 });
    const files = ['000000010000000000000003', '000000010000000000000004', '00000002.history'].map((n, i) => {
      const f = path.join(dir, n);
      // WAL-like: a compressible part and a random one, different in each
      fs.writeFileSync(f, Buffer.concat([Buffer.alloc(200_000, i), crypto.randomBytes(50_000)]));
      return f;
    });
    const got = await zstdCompressFiles(zstd, 1, files, out, { timeoutMs: 30_000 });
    expect([...got.keys()]).toEqual(files);
    for (const f of files) {
      const frame = got.get(f)!;
      expect(frame.length).toBeLessThan(fs.statSync(f).size);
      expect(execFileSync(zstdFile, ['-dc'], { input: frame }).equals(fs.readFileSync(f))).toBe(true);
    }
    expect(fs.readdirSync(out)).toEqual([]);
  });

  it('a file that cannot be read: a STORAGE error naming the program, and nothing left in the directory', async () => {
    const dir = tempDir();
    const out = path.join(dir, 'out');
    fs.mkdirSync(out, { mode: 0o700 });
    const there = path.join(dir, '000000010000000000000005');
    fs.writeFileSync(there, Buffer.alloc(100_000, 1));
    const err = await zstdCompressFiles(zstd, 1, [there, path.join(dir, '000000010000000000000006')], out, { timeoutMs: 30_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toContain(zstdFile);
    expect(fs.readdirSync(out)).toEqual([]);
  });
});
