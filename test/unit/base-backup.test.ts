import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { tarHeadLabel } from '../../src/pitr/base-head';
import { buffered } from '../../src/pitr/base-stream';
import { baseBackupError, hbaLine, type BaseServer } from '../../src/pitr/base-server';
import { rangeAround, walNeeded, walRangeOf } from '../../src/wal/base-range';
import { tarWatch } from '../../src/wal/base-tar';
import { tempDir } from '../helpers/temp';

const LABEL = 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n';
const MANIFEST_END =
  '{ "Path": "global/pg_control", "Size": 8192 }\n],\n"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }\n],\n"Manifest-Checksum": "' +
  'ab'.repeat(32) +
  '"}\n';
const SEG = 16 * 1024 * 1024;

/** What `stage` passes on of `chunks`. */
async function through(chunks: Buffer[], stage: Transform): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    stage,
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

describe('walRangeOf', () => {
  it('reads the range from backup_manifest (pg_basebackup -X none prints no LSN), the start and timeline from backup_label', () => {
    expect(walRangeOf({ label: LABEL, manifestTail: MANIFEST_END }, ['pg_basebackup: base backup completed'])).toEqual({
      start_lsn: '0/2000028',
      stop_lsn: '0/2000100',
      timeline: 1,
      manifest_checksum: 'ab'.repeat(32),
    });
  });
  it("takes pg_basebackup's own -v lines when it prints them", () => {
    const stderr = ['pg_basebackup: write-ahead log start point: 0/3000028 on timeline 2', 'pg_basebackup: write-ahead log end point: 0/3000138'];
    expect(walRangeOf({ label: undefined, manifestTail: undefined }, stderr)).toEqual({ start_lsn: '0/3000028', stop_lsn: '0/3000138', timeline: 2 });
  });
  it('says what is missing when nothing gives the stop', () => {
    expect(walRangeOf({ label: LABEL, manifestTail: undefined }, [])).toBe(
      'its WAL stop position is unknown (pg_basebackup did not print it, and the stream held backup_label)',
    );
  });
});

describe('rangeAround', () => {
  it("holds the backup's range: from its start, to the start of the segment the position after is in", () => {
    // the backup ended in segment 2 and switched: the position after is at, or past, the start of segment 3
    expect(rangeAround({ lsn: '0/2000010', timeline: 1 }, '0/3000000', SEG)).toEqual({ start_lsn: '0/2000010', stop_lsn: '0/3000000', timeline: 1 });
    expect(walNeeded(rangeAround({ lsn: '0/2000010', timeline: 1 }, '0/3000000', SEG) as never, SEG).segments).toEqual(['000000010000000000000002']);
    // WAL written after the switch: the range stops at a segment start, so it needs only completed segments
    const busy = rangeAround({ lsn: '0/2000010', timeline: 2 }, '0/5000200', SEG);
    expect(busy).toEqual({ start_lsn: '0/2000010', stop_lsn: '0/5000000', timeline: 2 });
    expect(walNeeded(busy as never, SEG).segments).toEqual(['000000020000000000000002', '000000020000000000000003', '000000020000000000000004']);
  });

  it('refuses positions that cannot hold a backup', () => {
    expect(rangeAround({ lsn: '0/2000010', timeline: 1 }, '0/2FFFFFF', SEG)).toMatch(/not past the segment it started in/);
    expect(rangeAround({ lsn: '0/2000010', timeline: 1 }, undefined, SEG)).toMatch(/recovery/);
  });
});

describe('walNeeded', () => {
  it('from the segment of the start to that of the last byte; a stop on a boundary ends the segment before; a later timeline needs its history', () => {
    expect(walNeeded({ start_lsn: '0/2000028', stop_lsn: '0/4000100', timeline: 1 }, SEG)).toEqual({
      segments: ['000000010000000000000002', '000000010000000000000003', '000000010000000000000004'],
      history: undefined,
    });
    expect(walNeeded({ start_lsn: '0/2000028', stop_lsn: '0/3000000', timeline: 3 }, SEG)).toEqual({
      segments: ['000000030000000000000002'],
      history: '00000003.history',
    });
  });
});

describe('tarWatch', () => {
  it("keeps backup_label, the end of backup_manifest and pg_control's system identifier, passing every byte through, whatever the chunks", async () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'global'));
    fs.mkdirSync(path.join(dir, 'base'));
    fs.writeFileSync(path.join(dir, 'backup_label'), LABEL);
    const control = Buffer.alloc(8192);
    control.writeBigUInt64LE(7716359542473130464n, 0);
    fs.writeFileSync(path.join(dir, 'global', 'pg_control'), control);
    fs.writeFileSync(path.join(dir, 'base', 'big'), Buffer.alloc(300_000, 7));
    fs.writeFileSync(path.join(dir, 'backup_manifest'), `{ "Files": [\n${'{ "Path": "x" },\n'.repeat(10_000)}${MANIFEST_END}`);
    const tar = execFileSync('tar', ['cf', '-', '-C', dir, 'backup_label', 'global', 'base', 'backup_manifest'], { maxBuffer: 1 << 26 });
    const chunks: Buffer[] = [];
    for (let at = 0, n = 1; at < tar.length; at += n, n = (n * 7 + 13) % 70_000 || 1) chunks.push(tar.subarray(at, at + n));
    const watch = tarWatch();
    expect((await through(chunks, watch.stage)).equals(tar)).toBe(true);
    const facts = watch.facts();
    expect(facts.label).toBe(LABEL);
    expect(facts.manifestTail?.endsWith(MANIFEST_END)).toBe(true);
    expect(facts.manifestTail!.length).toBeLessThanOrEqual(64 * 1024 + 70_000);
    expect(facts.systemIdentifier).toBe('7716359542473130464');
    expect(facts.ended).toBe(true);
  });
});

describe('tarHeadLabel: the WAL start off the head of a zstd-compressed tar', () => {
  const zstd = { name: 'zstd', file: '/usr/bin/zstd', env: { PATH: process.env.PATH ?? '' } };
  /** A tar as pg_basebackup's starts (backup_label first, then `bytes` of other files), compressed multithreaded as client-zstd does. */
  function compressedTar(label: string | undefined, bytes: number): Buffer {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'base'));
    if (label !== undefined) fs.writeFileSync(path.join(dir, 'backup_label'), label);
    fs.writeFileSync(path.join(dir, 'base', 'big'), crypto.randomBytes(bytes));
    const tar = execFileSync('tar', ['cf', '-', '-C', dir, ...(label !== undefined ? ['backup_label'] : []), 'base'], { maxBuffer: 1 << 27 });
    return execFileSync('zstd', ['-1', '-T2', '-c'], { input: tar, maxBuffer: 1 << 27 });
  }
  async function headOf(stream: Buffer, chunk = 64 * 1024): Promise<{ out: Buffer; start: Promise<unknown> }> {
    const head = tarHeadLabel(zstd, new AbortController().signal);
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += chunk) chunks.push(stream.subarray(at, at + chunk));
    return { out: await through(chunks, head.tap), start: head.start };
  }

  it("passes every byte on, and gives backup_label's start and timeline, before the stream has ended or after", async () => {
    const stream = compressedTar(LABEL, 40 * 1024 * 1024);
    const { out, start } = await headOf(stream);
    expect(out.equals(stream)).toBe(true);
    expect(await start).toEqual({ lsn: '0/2000028', timeline: 1 });
    // a small cluster: the whole stream has passed before zstd's first output
    const small = compressedTar(LABEL, 1000);
    const s = await headOf(small, small.length);
    expect(s.out.equals(small)).toBe(true);
    expect(await s.start).toEqual({ lsn: '0/2000028', timeline: 1 });
  });

  it('a stream without backup_label, or with a label that names no start, is an error that says so', async () => {
    await expect((await headOf(compressedTar(undefined, 1024 * 1024))).start).rejects.toThrow(/no WAL start at the head of pg_basebackup's compressed stream/);
    await expect((await headOf(compressedTar('LABEL: x\n', 1024))).start).rejects.toThrow(/its backup_label names no WAL start/);
    // not zstd at all: zstd's own words
    await expect((await headOf(Buffer.alloc(4096, 1))).start).rejects.toThrow(/no WAL start.*: zstd/);
  });
});

describe("buffered: pg_basebackup's output read ahead of its reader", () => {
  it('reads ahead up to its bound, then holds the source back; the reader gets every byte in order', async () => {
    const source = new PassThrough({ highWaterMark: 1024 });
    const out = buffered(source, 64 * 1024);
    const chunk = Buffer.alloc(4096, 7);
    let accepted = 0;
    while (source.write(chunk) && accepted < 100) accepted++;
    // nobody reads `out` yet: about 64 KB were taken in, then the source was told to wait
    await new Promise((r) => setImmediate(r));
    expect(out.readableLength + (out as PassThrough).writableLength).toBeGreaterThanOrEqual(32 * 1024);
    expect(accepted).toBeLessThan(100);
    source.end();
    const got: Buffer[] = [];
    for await (const c of out) got.push(c as Buffer);
    expect(Buffer.concat(got).length).toBe((accepted + 1) * chunk.length);
  });

  it('an error of the source reaches the reader (it does not wait for an end that never comes)', async () => {
    const source = new PassThrough();
    const out = buffered(source, 64 * 1024);
    source.write(Buffer.from('head'));
    setImmediate(() => source.destroy(new Error('EIO reading the pipe')));
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    await expect(pipeline(out, sink)).rejects.toThrow('EIO reading the pipe');
  });

  it('destroying what it returns destroys the source (pg_basebackup is not left writing into a buffer nobody reads)', async () => {
    const source = new PassThrough();
    const out = buffered(source, 64 * 1024);
    out.destroy();
    await new Promise((r) => setImmediate(r));
    expect(source.destroyed).toBe(true);
  });
});

describe("pg_basebackup's refusals", () => {
  const server: BaseServer = {
    systemIdentifier: '1',
    versionNum: 150004,
    segmentSize: SEG,
    role: 'backup',
    clientAddr: '10.0.0.7',
    now: new Date(),
    inRecovery: false,
  };
  const db = { host: 'db', port: 5432, user: 'backup', password: 'pw', database: 'app', sslmode: undefined, connectTimeoutSeconds: 10 };
  it('no pg_hba.conf line for replication: the line to add, for the address the server sees, and the reload', () => {
    const e = baseBackupError(
      'connection to server at "db" (10.0.0.7), port 5432 failed: FATAL:  no pg_hba.conf entry for replication connection from host "10.0.0.7", user "backup", no encryption',
      server,
      db,
      '',
    );
    expect(e.code).toBe('DB_AUTH');
    expect(e.hint).toContain('host replication backup 10.0.0.7/32 scram-sha-256');
    expect(e.hint).toContain('SELECT pg_reload_conf();');
    expect(hbaLine('backup', null)).toBe('local replication backup scram-sha-256');
  });
  it('no REPLICATION: PRIVILEGE with the ALTER ROLE', () => {
    for (const m of ['FATAL:  must be superuser or replication role to start walsender', 'FATAL:  permission denied to start WAL sender']) {
      const e = baseBackupError(m, server, db, '');
      expect([e.code, e.hint]).toEqual(['PRIVILEGE', 'As a superuser: ALTER ROLE backup REPLICATION;']);
    }
  });
});
