import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArchiveProblem, describeEntry, type ArchiveSummary } from '../../src/dump/archive-format';
import { offsetWrites, recordedOffsets, seekableOffsets } from '../../src/dump/archive-offsets';
import { CustomArchiveReader } from '../../src/dump/custom-archive';
import { archiveCheck } from '../../src/dump/stream-check';
import { BackupError } from '../../src/errors';
import { listUserTables, type TableRef } from '../../src/pg/catalog';
import { dropDb, pgInfo, query } from '../helpers/pg';

/*
 * The archives here are made by the test cluster's own pg_dump writing into a pipe, as a backup
 * does; the boundaries of their data blocks are found without the reader under test (from
 * `pg_restore --list` and the block headers' bytes), then the archives are cut, spliced and
 * extended.
 */

const SMALL_SQL = `
CREATE TABLE public.users (id int PRIMARY KEY, name text);
INSERT INTO public.users SELECT g, 'user ' || g FROM generate_series(1, 300) g;
CREATE TABLE public.empty (x int);
CREATE SCHEMA "we ird";
CREATE TABLE "we ird"."tab ""q"" é ✓" (x int);
INSERT INTO "we ird"."tab ""q"" é ✓" VALUES (1), (2);
CREATE SCHEMA "x y";
CREATE TABLE "x y".z (v text);
INSERT INTO "x y".z VALUES ('a');
SELECT lo_from_bytea(0, convert_to(repeat('a large object ', 400), 'UTF8'));
SELECT lo_from_bytea(0, '');
`;

const MANY_SQL = `
CREATE SCHEMA many;
DO $$ BEGIN
  FOR i IN 1..150 LOOP
    EXECUTE format('CREATE TABLE many.t%s (id int, v text)', i);
    EXECUTE format('INSERT INTO many.t%s SELECT g, md5(g::text) FROM generate_series(1, %s) g', i, i * 3);
  END LOOP;
END $$;
CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS a FROM generate_series(1, 20000) g;
SELECT lo_from_bytea(0, convert_to(repeat('x', 100000), 'UTF8'));
`;

const created: string[] = [];

async function database(sql: string, opts: { encoding?: string } = {}): Promise<string> {
  const name = `archive_${crypto.randomBytes(4).toString('hex')}`;
  const enc = opts.encoding ? ` ENCODING '${opts.encoding}' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'` : '';
  await query('postgres', `CREATE DATABASE "${name}"${enc}`);
  created.push(name);
  await query(name, sql);
  return name;
}

afterAll(async () => {
  for (const name of created) await dropDb(name);
});

function pgEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', PGPASSWORD: pgInfo().password };
}

function bin(tool: string): string {
  return path.join(pgInfo().binDir, tool);
}

/** pg_dump's output written to a pipe (not seekable), as a backup streams it. */
function dump(db: string, args: string[] = []): Buffer {
  const { host, port, user } = pgInfo();
  return execFileSync(bin('pg_dump'), ['--no-password', '-h', host, '-p', String(port), '-U', user, ...args, db], {
    env: pgEnv(),
    maxBuffer: 512 * 1024 * 1024,
  });
}

/** The entries with data, in TOC order, as `pg_restore --list` shows them: dumpId and the listing. */
function dataEntries(archive: Buffer): { id: number; line: string }[] {
  // from a file: pg_restore stops reading a pipe after the table of contents
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-archive-'));
  const file = path.join(dir, 'archive.dump');
  fs.writeFileSync(file, archive);
  let listing: string;
  try {
    listing = execFileSync(bin('pg_restore'), ['--list', file], { env: pgEnv() }).toString('utf8');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return listing
    .split('\n')
    .map((line) => ({ line, m: /^(\d+); \d+ \d+ (TABLE DATA|BLOBS) /.exec(line) }))
    .filter((x) => x.m)
    .map(({ line, m }) => ({ id: Number(m![1]), line }));
}

interface Block {
  id: number;
  line: string;
  start: number;
  end: number;
}

/**
 * Each data block's byte range: a block starts with its type (1 data, 3 large objects), then its
 * dumpId as a sign byte and four little-endian bytes; blocks follow each other in TOC order up
 * to the end of the file, and each ends with a zero length (and a large-object block with a
 * zero OID after it).
 */
function blocks(archive: Buffer): Block[] {
  const entries = dataEntries(archive);
  const out: Block[] = [];
  let from = 0;
  for (const e of entries) {
    const type = e.line.includes(' BLOBS ') ? 3 : 1;
    const header = Buffer.from([type, 0, e.id & 0xff, (e.id >> 8) & 0xff, (e.id >> 16) & 0xff, (e.id >> 24) & 0xff]);
    const start = archive.indexOf(header, from);
    expect(start, `block of ${e.line}`).toBeGreaterThan(from);
    out.push({ ...e, start, end: 0 });
    from = start + 1;
  }
  out.forEach((b, i) => (b.end = out[i + 1]?.start ?? archive.length));
  for (const b of out) expect(archive.subarray(b.end - 5, b.end)).toEqual(Buffer.alloc(5));
  return out;
}

/** Reads `archive` fed in pieces that end at the given offsets. */
function read(archive: Buffer, cuts: number[] = []): ArchiveSummary {
  const r = new CustomArchiveReader();
  let at = 0;
  for (const c of cuts) {
    r.write(archive.subarray(at, c));
    at = c;
  }
  r.write(archive.subarray(at));
  return r.end();
}

function problem(archive: Buffer): ArchiveProblem {
  try {
    read(archive);
  } catch (err) {
    expect(err).toBeInstanceOf(ArchiveProblem);
    return err as ArchiveProblem;
  }
  throw new Error('the archive was accepted');
}

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function userTables(db: string): Promise<TableRef[]> {
  const { host, port, user, password } = pgInfo();
  const client = new pg.Client({ host, port, user, password, database: db });
  await client.connect();
  try {
    return await listUserTables(client);
  } finally {
    await client.end();
  }
}

/** The name the reader gives a `pg_restore --list` line's entry. */
function nameOf(b: Block, summary: ArchiveSummary): string {
  return describeEntry(summary.entries.find((e) => e.dumpId === b.id)!);
}

let small: string;
let many: string;
let smallGz: Buffer;
let smallRaw: Buffer;
let manyGz: Buffer;

beforeAll(async () => {
  small = await database(SMALL_SQL);
  many = await database(MANY_SQL);
  smallGz = dump(small, ['--format=custom']);
  smallRaw = dump(small, ['--format=custom', '--compress=0']);
  manyGz = dump(many, ['--format=custom']);
});

describe('CustomArchiveReader on archives pg_dump wrote to a pipe', () => {
  it('finds every table of the snapshot and its data block, names exact, compressed or not', async () => {
    const tables = await userTables(small);
    for (const archive of [smallGz, smallRaw]) {
      const s = read(archive);
      expect(s.version).toMatch(/^1\.1[2-6]/);
      const data = s.entries.filter((e) => e.desc === 'TABLE DATA');
      expect(data.map((e) => ({ schema: e.namespace, name: e.tag })).sort((a, b) => `${a.schema}.${a.name}`.localeCompare(`${b.schema}.${b.name}`))).toEqual(
        tables.map((t) => ({ schema: t.schema, name: t.name })),
      );
      expect(data.map(describeEntry)).toContain('table we ird.tab "q" é ✓');
      expect(s.entries.filter((e) => e.desc === 'BLOBS')).toHaveLength(1);
      expect(s.dataBlocks).toBe(blocks(archive).length);
      expect(s.entries.every((e) => e.hasData)).toBe(true);
      expect(s.totalBytes).toBe(archive.length);
    }
    expect(read(smallGz).compression).toBe('gzip');
    expect(read(smallRaw).compression).toBe('none');
  });

  it('reads the same fed one byte at a time and in random pieces', () => {
    for (const archive of [smallGz, smallRaw, manyGz]) {
      const whole = read(archive);
      expect(whole.dataBlocks).toBeGreaterThan(3);
      const bytewise = new CustomArchiveReader();
      for (let i = 0; i < archive.length; i++) bytewise.write(archive.subarray(i, i + 1));
      expect(bytewise.end()).toEqual(whole);
      const rand = prng(archive.length);
      for (let round = 0; round < 5; round++) {
        const cuts = Array.from({ length: 40 }, () => Math.floor(rand() * archive.length)).sort((a, b) => a - b);
        expect(read(archive, cuts)).toEqual(whole);
      }
    }
  });

  it('reads many tables and large objects', async () => {
    const s = read(manyGz);
    expect(s.entries.filter((e) => e.desc === 'TABLE DATA')).toHaveLength((await userTables(many)).length);
    expect(s.entries.filter((e) => e.desc === 'TABLE DATA')).toHaveLength(151);
    expect(s.dataBlocks).toBe(152);
  });

  it('gives an archive written to a pipe the data offsets pg_dump writes into a file, so that pg_restore --jobs seeks', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-offsets-'));
    try {
      const { host, port, user } = pgInfo();
      const seekable = path.join(dir, 'seekable.dump');
      execFileSync(bin('pg_dump'), ['--no-password', '-h', host, '-p', String(port), '-U', user, '-Fc', '-Z0', '-f', seekable, many], { env: pgEnv() });
      const piped = dump(many, ['--format=custom', '--compress=0']);
      const fromFile = fs.readFileSync(seekable);
      expect(piped.length).toBe(fromFile.length);
      const summary = read(piped);
      const writes = seekableOffsets(summary);
      expect(writes).toHaveLength(152);
      const patched = Buffer.from(piped);
      for (const w of writes) w.bytes.copy(patched, w.at);
      // the same offsets pg_dump wrote when it could seek, and every one points at its entry's data block
      for (const e of summary.entries.filter((x) => x.hasData)) {
        const field = [e.offsetField.at, e.offsetField.at + 1 + summary.offSize] as const;
        expect(patched.subarray(...field).equals(fromFile.subarray(...field)), describeEntry(e)).toBe(true);
        expect(piped[e.offsetField.at]).toBe(1); // "not set" in what was written to the pipe
        expect(patched[e.dataPos!]).toBe(e.desc === 'BLOBS' ? 3 : 1);
      }
      // and a patched archive needs no second patch
      expect(seekableOffsets(read(patched))).toEqual([]);
      // the offsets a manifest records give the same writes, each checked against the archive first
      const recorded = recordedOffsets(summary)!;
      expect(recorded.at).toHaveLength(152);
      const inMemory = (buf: Buffer) => ({
        read: (into: Buffer, off: number, len: number, pos: number) => Promise.resolve({ bytesRead: buf.copy(into, off, pos, pos + len) }),
      });
      expect(await offsetWrites(inMemory(piped), piped.length, recorded)).toEqual(writes);
      // ones that do not fit this archive are refused, never written: an offset field already set,
      // a block position one byte off, beyond the end, and a size pg_dump never writes
      expect(await offsetWrites(inMemory(patched), patched.length, recorded)).toBeUndefined();
      const shifted = { ...recorded, at: recorded.at.map(([a, p]) => [a, p + 1] as [number, number]) };
      expect(await offsetWrites(inMemory(piped), piped.length, shifted)).toBeUndefined();
      const beyond = { ...recorded, at: [...recorded.at, [recorded.at[0]![0], piped.length] as [number, number]] };
      expect(await offsetWrites(inMemory(piped), piped.length, beyond)).toBeUndefined();
      expect(await offsetWrites(inMemory(piped), piped.length, { ...recorded, size: 9 })).toBeUndefined();
      const file = path.join(dir, 'patched.dump');
      fs.writeFileSync(file, patched);
      const target = await database('SELECT 1');
      execFileSync(bin('pg_restore'), ['--no-password', '-h', host, '-p', String(port), '-U', user, '--exit-on-error', '--jobs=2', '-d', target, file], {
        env: pgEnv(),
      });
      const rows = await query<{ n: number }>(target, `SELECT (SELECT count(*) FROM many.t150)::int + (SELECT count(*) FROM public.big)::int AS n`);
      expect(rows[0]!.n).toBe(450 + 20000);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads an archive without data (an empty database)', async () => {
    const s = read(dump(await database('SELECT 1'), ['--format=custom']));
    expect(s.entries).toEqual([]);
    expect(s.dataBlocks).toBe(0);
  });

  it("decodes names in the database's encoding (LATIN1)", async () => {
    const db = await database(`CREATE TABLE "café ü" (x int); INSERT INTO "café ü" VALUES (1);`, { encoding: 'LATIN1' });
    const s = read(dump(db, ['--format=custom']));
    expect(s.entries.map((e) => [e.namespace, e.tag])).toEqual([['public', 'café ü']]);
  });

  it('refuses every archive cut short, at every offset, naming where it ends', () => {
    for (const archive of [smallGz, smallRaw]) {
      const bs = blocks(archive);
      const whole = read(archive);
      const tocEnd = bs[0]!.start;
      // every offset of the compressed archive; of the uncompressed one (mostly rows) every offset
      // of its header and TOC and around each block's ends, and every 7th inside the rows
      const near = (c: number) => c <= tocEnd + 16 || bs.some((b) => Math.abs(c - b.start) <= 16 || Math.abs(c - b.end) <= 16);
      for (let cut = 0; cut < archive.length; cut++) {
        if (archive === smallRaw && !near(cut) && cut % 7 !== 0) continue;
        const p = problem(archive.subarray(0, cut));
        expect(p.kind, `cut at ${cut}`).toBe('truncated');
        const inBlock = bs.findIndex((b) => cut > b.start && cut < b.end);
        if (cut < tocEnd) {
          expect(p.message, `cut at ${cut}`).toMatch(/^the archive ends inside its (header|table of contents)/);
        } else if (inBlock === -1) {
          const next = bs.findIndex((b) => b.start === cut);
          expect(p.message, `cut at ${cut}`).toBe(
            `the archive ends before its last data block: no data for ${bs
              .slice(next)
              .map((b) => nameOf(b, whole))
              .join(', ')}`,
          );
        } else if (cut - bs[inBlock]!.start < 6) {
          expect(p.message, `cut at ${cut}`).toMatch(/^the archive ends inside the header of a data block/);
        } else {
          expect(p.message, `cut at ${cut}`).toBe(`the archive ends inside the data of ${nameOf(bs[inBlock]!, whole)}`);
        }
      }
      // the two cuts the issue names
      expect(problem(archive.subarray(0, tocEnd)).message).toMatch(/^the archive ends before its last data block: no data for table public\.empty, /);
      expect(problem(archive.subarray(0, archive.length - 1)).message).toBe('the archive ends inside the data of the large objects');
    }
  });

  it('refuses a large archive cut at sampled offsets', () => {
    const bs = blocks(manyGz);
    const cuts = [bs[0]!.start, ...bs.map((b) => b.end - 1), ...Array.from({ length: 200 }, (_, i) => Math.floor(((i + 0.5) / 200) * manyGz.length))];
    for (const cut of cuts) expect(problem(manyGz.subarray(0, cut)).kind, `cut at ${cut}`).toBe('truncated');
  });

  it('names a table whose data block is missing, and a block cut out of the middle', () => {
    for (const archive of [smallGz, smallRaw]) {
      const bs = blocks(archive);
      const users = bs.find((b) => / TABLE DATA public users /.test(b.line))!;
      const without = Buffer.concat([archive.subarray(0, users.start), archive.subarray(users.end)]);
      expect(problem(without)).toMatchObject({ kind: 'damaged', message: 'the archive has no data block for table public.users' });
      // the block's header kept, its chunks gone: the next block's header is read as a chunk length
      const hollow = Buffer.concat([archive.subarray(0, users.start + 6), archive.subarray(users.end)]);
      expect(problem(hollow).kind).not.toBe('unsupported');
      // the last block missing: the archive ends before it
      const last = bs[bs.length - 1]!;
      expect(problem(archive.subarray(0, last.start)).message).toBe('the archive ends before its last data block: no data for the large objects');
    }
  });

  it('refuses anything after the last data block: garbage, zeros, a repeated block, a half-written block', () => {
    const bs = blocks(smallGz);
    const users = bs.find((b) => / TABLE DATA public users /.test(b.line))!;
    const after = (extra: Buffer) => problem(Buffer.concat([smallGz, extra]));
    expect(after(Buffer.from('garbage')).message).toMatch(/^the archive has unexpected bytes after its last data block/);
    expect(after(Buffer.alloc(512)).message).toMatch(/^the archive has unexpected bytes after its last data block/);
    expect(after(smallGz.subarray(users.start, users.end)).message).toMatch(/a second data block for table public\.users/);
    expect(after(Buffer.from([1])).message).toMatch(/^the archive ends inside the header of a data block/);
    expect(after(smallGz.subarray(users.start, users.start + 20)).message).toMatch(/a second data block for table public\.users/);
    // out of order: the users block moved to the end
    const moved = Buffer.concat([smallGz.subarray(0, users.start), smallGz.subarray(users.end), smallGz.subarray(users.start, users.end)]);
    expect(problem(moved).message).toMatch(/the data block of table public\.users is out of order|no data block for table public\.users/);
  });

  it('refuses another format and an unknown archive version clearly', async () => {
    expect(problem(dump(small, ['--format=plain']))).toMatchObject({
      kind: 'damaged',
      message: expect.stringMatching(/not a custom-format archive/) as string,
    });
    expect(problem(dump(small, ['--format=tar'])).message).toMatch(/not a custom-format archive/);
    expect(problem(Buffer.alloc(0)).message).toBe('the archive ends inside its header');
    const newer = Buffer.from(smallGz);
    newer[6] = 17; // minor version: PGDMP, major, minor, revision
    expect(problem(newer)).toMatchObject({
      kind: 'unsupported',
      message: expect.stringMatching(/format version 1\.17, which this version of basement-backup cannot check/) as string,
    });
    const older = Buffer.from(smallGz);
    older[6] = 11;
    expect(problem(older).kind).toBe('unsupported');
    // random damage never crashes the reader: it is accepted or refused with an ArchiveProblem
    const rand = prng(7);
    for (let i = 0; i < 300; i++) {
      const bad = Buffer.from(smallGz);
      bad[Math.floor(rand() * bad.length)] = Math.floor(rand() * 256);
      try {
        read(bad);
      } catch (err) {
        expect(err).toBeInstanceOf(ArchiveProblem);
      }
    }
    await Promise.resolve();
  });
});

/*
 * pg_dump 16 and 17 (archive versions 1.15 and 1.16) are not on this machine, so their layout is
 * written here after their WriteHead, WriteToc, _WriteExtraToc, _StartData/_EndData and
 * _StartLOs/_StartLO/_EndLO/_EndLOs: 1.15 replaced the header's compression level (an int) by
 * an algorithm byte, 1.16 added each TOC entry's relkind (an int) after its table access method.
 * The same writer's 1.14 output is checked with this machine's real pg_restore first.
 */
interface SynthEntry {
  id: number;
  desc: string;
  namespace: string | null;
  tag: string;
  section: number; // SECTION_PRE_DATA 2, SECTION_DATA 3
  defn: string;
  copy?: string;
  /** per data block: its chunks; for BLOBS, per large object its OID and chunks */
  data?: Buffer[] | { oid: number; chunks: Buffer[] }[];
}

function synthArchive(minor: number, entries: SynthEntry[]): Buffer {
  const int = (v: number) => {
    const b = Buffer.alloc(5);
    b[0] = v < 0 ? 1 : 0;
    b.writeUInt32LE(Math.abs(v), 1);
    return b;
  };
  const str = (v: string | null) => (v === null ? int(-1) : Buffer.concat([int(Buffer.byteLength(v)), Buffer.from(v)]));
  const parts: Buffer[] = [Buffer.from('PGDMP'), Buffer.from([1, minor, 0, 4, 8, 1])];
  parts.push(minor >= 15 ? Buffer.from([0]) : int(0)); // no compression
  for (const v of [5, 4, 3, 2, 1, 125, 0]) parts.push(int(v));
  parts.push(str('synth'), str('17.0'), str('17.0'));
  parts.push(int(entries.length));
  for (const e of entries) {
    parts.push(int(e.id), int(e.data ? 1 : 0), str('0'), str('0'), str(e.tag), str(e.desc), int(e.section), str(e.defn), str(''), str(e.copy ?? ''));
    parts.push(str(e.namespace), str(''));
    if (minor >= 14) parts.push(str(e.desc === 'TABLE' ? 'heap' : ''));
    if (minor >= 16) parts.push(int(e.desc === 'TABLE' || e.desc === 'TABLE DATA' ? 0x72 : 0));
    parts.push(str('postgres'), str('false'), str(null));
    parts.push(Buffer.from([e.data ? 1 : 3]), Buffer.alloc(8));
  }
  for (const e of entries) {
    if (!e.data) continue;
    if (e.desc === 'BLOBS') {
      parts.push(Buffer.from([3]), int(e.id));
      for (const lo of e.data as { oid: number; chunks: Buffer[] }[]) {
        parts.push(int(lo.oid));
        for (const c of lo.chunks) parts.push(int(c.length), c);
        parts.push(int(0));
      }
      parts.push(int(0));
    } else {
      parts.push(Buffer.from([1]), int(e.id));
      for (const c of e.data as Buffer[]) parts.push(int(c.length), c);
      parts.push(int(0));
    }
  }
  return Buffer.concat(parts);
}

const SYNTH: SynthEntry[] = [
  { id: 1, desc: 'ENCODING', namespace: null, tag: 'ENCODING', section: 2, defn: "SET client_encoding = 'UTF8';\n" },
  { id: 5, desc: 'TABLE', namespace: 'public', tag: 'té st', section: 2, defn: 'CREATE TABLE public."té st" (x integer);\n' },
  { id: 6, desc: 'TABLE', namespace: 'public', tag: 'empty', section: 2, defn: 'CREATE TABLE public.empty (x integer);\n' },
  {
    id: 9,
    desc: 'TABLE DATA',
    namespace: 'public',
    tag: 'té st',
    section: 3,
    defn: '',
    copy: 'COPY public."té st" (x) FROM stdin;\n',
    data: [Buffer.from('1\n2\n'), Buffer.from('3\n\\.\n\n')],
  },
  {
    id: 10,
    desc: 'TABLE DATA',
    namespace: 'public',
    tag: 'empty',
    section: 3,
    defn: '',
    copy: 'COPY public.empty (x) FROM stdin;\n',
    data: [Buffer.from('\\.\n\n')],
  },
  { id: 11, desc: 'BLOB METADATA', namespace: null, tag: '16400..16401', section: 2, defn: '16400\n16401\n' },
  {
    id: 12,
    desc: 'BLOBS',
    namespace: null,
    tag: 'BLOBS',
    section: 3,
    defn: '',
    data: [
      { oid: 16400, chunks: [Buffer.from('abc')] },
      // OIDs above 2^31 are written as negative C ints
      { oid: 0x80000000 | 0, chunks: [Buffer.from('x')] },
      { oid: 0xfffffff0 | 0, chunks: [] },
    ],
  },
  { id: 13, desc: 'BLOBS', namespace: null, tag: 'BLOBS', section: 3, defn: '', data: [{ oid: 16401, chunks: [] }] },
];

describe('archive versions written by pg_dump 16 and 17', () => {
  it("the test's writer makes archives this machine's pg_restore reads whole (version 1.14)", () => {
    const archive = synthArchive(14, SYNTH.slice(0, 5));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-archive-'));
    try {
      fs.writeFileSync(path.join(dir, 'a.dump'), archive);
      const list = execFileSync(bin('pg_restore'), ['--list', path.join(dir, 'a.dump')], { env: pgEnv() }).toString('utf8');
      expect(list).toMatch(/^9; 0 0 TABLE DATA public té st postgres$/m);
      // pg_restore reading the archive from a pipe, every data block in turn, as a restore from a bucket does
      const sql = execFileSync(bin('pg_restore'), ['--file=-'], { input: archive, env: pgEnv() }).toString('utf8');
      expect(sql).toContain('COPY public."té st" (x) FROM stdin;\n1\n2\n3\n\\.\n\n');
      expect(sql).toContain('COPY public.empty (x) FROM stdin;\n\\.\n\n');
      expect(sql).toContain('-- PostgreSQL database dump complete');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(read(archive).entries.map((e) => [e.desc, e.namespace, e.tag])).toEqual([
      ['TABLE DATA', 'public', 'té st'],
      ['TABLE DATA', 'public', 'empty'],
    ]);
  });

  it.each([15, 16])('reads version 1.%i, several BLOBS entries included, and refuses it cut short', (minor) => {
    const archive = synthArchive(minor, SYNTH);
    const s = read(archive);
    expect(s.version).toBe(`1.${minor}`);
    expect(s.compression).toBe('none');
    expect(s.entries.map(describeEntry)).toEqual(['table public.té st', 'table public.empty', 'the large objects', 'the large objects']);
    expect(s.dataBlocks).toBe(4);
    for (let cut = 0; cut < archive.length; cut++) expect(problem(archive.subarray(0, cut)).kind).toBe('truncated');
  });
});

/** Runs a whole dump through the streaming check, in pieces of `piece` bytes. */
async function check(format: 'custom' | 'plain', data: Buffer, tables: TableRef[], piece = 65536): Promise<void> {
  const c = archiveCheck(format);
  const pieces = Array.from({ length: Math.ceil(data.length / piece) }, (_, i) => data.subarray(i * piece, (i + 1) * piece));
  await pipeline(Readable.from(pieces), c.stream);
  await c.verify(tables);
}

async function refused(p: Promise<void>): Promise<BackupError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackupError);
  expect((err as BackupError).code).toBe('DUMP_INVALID');
  expect((err as BackupError).exitCode).toBe(21);
  expect((err as BackupError).hint).toBeTruthy();
  return err as BackupError;
}

describe('the archive check of a backup (custom format)', () => {
  it('passes a whole archive with data for every table of the snapshot', async () => {
    await check('custom', smallGz, await userTables(small));
    await check('custom', smallRaw, await userTables(small), 7);
  });

  it('refuses an archive cut after its table of contents', async () => {
    const cut = smallGz.subarray(0, blocks(smallGz)[0]!.start);
    const err = await refused(check('custom', cut, await userTables(small)));
    expect(err.message).toMatch(/^the archive ends before its last data block: no data for table public\.empty, table public\.users/);
    expect(err.hint).toMatch(/stopped early.*not kept/);
  });

  it('refuses an archive cut inside a table, and one without a table', async () => {
    const bs = blocks(smallGz);
    const users = bs.find((b) => / TABLE DATA public users /.test(b.line))!;
    const inside = smallGz.subarray(0, users.start + Math.floor((users.end - users.start) / 2));
    expect((await refused(check('custom', inside, await userTables(small)))).message).toBe('the archive ends inside the data of table public.users');
    const without = Buffer.concat([smallGz.subarray(0, users.start), smallGz.subarray(users.end)]);
    expect((await refused(check('custom', without, await userTables(small)))).message).toBe('the archive has no data block for table public.users');
  });

  it('matches tables on their exact schema and name, spaces and all', async () => {
    // The archive holds "x y".z; a table x."y z" is not in it.
    const tables = [...(await userTables(small)), { schema: 'x', name: 'y z' }];
    expect((await refused(check('custom', smallGz, tables))).message).toBe('the dump has no data for 1 table(s): x.y z');
  });
});

describe('the archive check of a backup (plain format)', () => {
  // the check reads pg_dump's own output, before any compression stage
  let sql: Buffer;
  const complete = '-- PostgreSQL database dump complete\n';

  beforeAll(() => {
    sql = dump(small, ['--format=plain']);
  });

  it('passes a whole dump', async () => {
    expect(sql.toString('utf8')).toContain(complete);
    await check('plain', sql, await userTables(small));
    await check('plain', sql, await userTables(small), 3);
  });

  it('refuses a dump cut right before its closing line, or before its last lines', async () => {
    const at = sql.indexOf(complete);
    const before = await refused(check('plain', sql.subarray(0, at), await userTables(small)));
    expect(before.message).toBe('the SQL dump ends before pg_dump\'s closing line ("-- PostgreSQL database dump complete")');
    await refused(check('plain', sql.subarray(0, at + complete.length - 2), await userTables(small)));
    if (sql.includes('\n\\unrestrict ')) {
      const un = sql.lastIndexOf('\\unrestrict ');
      expect((await refused(check('plain', sql.subarray(0, un), await userTables(small)))).message).toMatch(/ends before its closing "\\unrestrict" line/);
      await refused(check('plain', sql.subarray(0, un + 15), await userTables(small)));
    }
  });

  it('refuses SQL after the closing line', async () => {
    const more = Buffer.concat([sql, Buffer.from('DROP TABLE users;\n')]);
    expect((await refused(check('plain', more, await userTables(small)))).message).toBe(
      'the SQL dump has content after pg_dump\'s closing line ("-- PostgreSQL database dump complete")',
    );
  });

  it('ignores table data that only looks like the closing line', async () => {
    const db = await database(
      `CREATE TABLE notes (t text); INSERT INTO notes VALUES ('-- PostgreSQL database dump complete'), ('-- Data for Name: ghost; Type: TABLE DATA; Schema: public; Owner: x');`,
    );
    const tables = await userTables(db);
    await check('plain', dump(db, ['--format=plain']), tables);
    expect((await refused(check('plain', dump(db, ['--format=plain']), [...tables, { schema: 'public', name: 'ghost' }]))).message).toMatch(/public\.ghost/);
  });
});
