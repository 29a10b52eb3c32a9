/**
 * The benchmark's databases (--dataset / BENCH_DATASET): what each dataset holds and how it is
 * built on the throwaway cluster (see bench.ts's header).
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { Cluster } from '../scripts/lib/cluster';
import { MB } from './report';

/** Size of pgbench's tables and indexes per unit of scale (-s), measured on PostgreSQL 15. */
const PGBENCH_MB_PER_SCALE = 15.6;

/** The data the benchmark's databases hold (--dataset / BENCH_DATASET). */
export type Dataset = 'default' | FixedDataset;
/** The datasets of a fixed size: issue10's rows of random text and jsonb, in two proportions. */
export type FixedDataset = 'issue10' | 'dominant';
export const DATASETS: readonly Dataset[] = ['default', 'issue10', 'dominant'];

/** A dataset of a fixed size: pgbench -s `scale` and `rows` of issue10's bench_docs rows (small*: the quarter-size database). */
export interface Fixed {
  scale: number;
  rows: number;
  smallScale: number;
  smallRows: number;
  /** Its size in MB, nominal: what the headings say. */
  sizeMb: number;
  /** What it is, for the headings. */
  what: string;
}

export const FIXED: Record<FixedDataset, Fixed> = {
  /**
   * `--dataset issue10`: the database issue 10 measured its targets on, "a 510 MB database
   * (pgbench scale 20 plus 600,000 rows of random text and jsonb)". The quarter-size database is a
   * quarter of both.
   */
  issue10: { scale: 20, rows: 600_000, smallScale: 5, smallRows: 150_000, sizeMb: 510, what: "issue 10's database" },
  /**
   * `--dataset dominant`: "a database with one dominant table" (issue 19): pgbench -s 1 (23.6 MB
   * with the empty bench_docs) and 1,270,000 of issue10's bench_docs rows (374.5 bytes each on disk
   * with the primary key, measured on PostgreSQL 15: 200,000 rows took 74.9 MB), ~500 MB in all,
   * bench_docs ~95 % of it. The quarter-size database has a quarter of the rows (pgbench -s 1
   * cannot shrink): ~142 MB.
   */
  dominant: { scale: 1, rows: 1_270_000, smallScale: 1, smallRows: 317_500, sizeMb: 500, what: 'one dominant table' },
};

/** What datasetLine and dbSpec need of the options: the dataset, and the default dataset's size. */
interface DatasetChoice {
  dataset: Dataset;
  sizeMb: number;
}

/** libpq's environment for the cluster: the password travels here, never in argv. */
export function libpq(cluster: Cluster, database: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    PGHOST: cluster.host,
    PGPORT: String(cluster.port),
    PGUSER: cluster.user,
    PGPASSWORD: cluster.password,
    PGDATABASE: database,
  };
}

export async function databaseSize(cluster: Cluster, database: string): Promise<number> {
  const rows = await cluster.query<{ n: string }>(database, 'SELECT pg_database_size(current_database())::text AS n');
  return Number(rows[0]!.n);
}

const DOCS_TABLE = `
CREATE TABLE bench_docs (
  id bigint PRIMARY KEY,
  created_at timestamptz NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  doc jsonb NOT NULL
)`;

/** Rows [from, to] of bench_docs: ~600 bytes each, below the TOAST threshold, compressing about like real text. */
function docsInsert(from: number, to: number): string {
  return `
INSERT INTO bench_docs (id, created_at, title, body, doc)
SELECT g,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds',
       'Document ' || g || ' about server ' || (g % 977),
       concat_ws(' ', 'Deployment log of', g, md5(g::text), 'status', (ARRAY['ok','failed','pending','rolled back'])[1 + g % 4],
                 md5((g * 3)::text), 'by user', g % 5003, md5((g * 7)::text), 'took', g % 613, 'seconds', md5((g * 11)::text),
                 substr(md5((g * 13)::text), 1, 1 + g % 32)),
       jsonb_build_object(
         'user_id', g % 5003,
         'plan', (ARRAY['basic','pro','business'])[1 + g % 3],
         'tags', jsonb_build_array('t' || (g % 7), 't' || (g % 13), 't' || (g % 31)),
         'score', round(((g % 997) / 7.0)::numeric, 3),
         'active', g % 2 = 0,
         'commit', md5((g * 17)::text),
         'meta', jsonb_build_object('region', 'eu-' || (g % 5), 'attempt', g % 4, 'hash', md5((g * 19)::text))
       )
FROM generate_series(${from}, ${to}) AS g`;
}

/**
 * issue10's bench_docs. The primary key is added after the load, as pg_restore adds it, so the
 * source's index is as compact as a restored one (and the load is quicker).
 */
const ISSUE10_DOCS_TABLE = `
CREATE TABLE bench_docs (
  id bigint NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  doc jsonb NOT NULL
)`;

/**
 * The character map of issue10's random text, applied to base64 with one replace() per character
 * (translate() with the 64 codes is about ten times slower on strings this long): of the 64 base64
 * codes, 18 become a space (Q–Z, u–z, + and /) and 46 a hex digit (A–P become 0–9a–f and g–t
 * 0–9a–d, besides 0–9a–f themselves: three codes each for 0–d, two for e and f); the line breaks
 * of encode() go. So the text is short "words" of random hex digits, ~28 % spaces.
 *
 * Chosen by measuring whole candidate databases with pg_dump against issue 10's figures (and
 * zlib's work per byte with valgrind, the 2-core machine's load being uneven). The spaces are the
 * knob: runs of them give zlib 6 long hash chains of short repeats to search, so more spaces make
 * gzip slower relative to -Z0 (and the data a little more compressible): 18 of 64 gave gzip
 * 95.9 MB in ~4.5× -Z0's time on a quiet machine, 20 gave 94.8 MB in ~5×, 27 (with five more
 * letters) 93.5 MB in 5.6–6.4×. Text of other letters (English letter frequencies, a word list, 32
 * letters and digits) leaves zstd -1 only ~5–8 % smaller than gzip instead of issue 10's 15 %:
 * zstd's edge needs the text to share its alphabet with the ids, numbers and md5s of the rows.
 */
const ISSUE10_TEXT_MAP: readonly (readonly [string, string])[] = [
  ...[...'ABCDEFGHIJKLMNOP'].map((c, i) => [c, '0123456789abcdef'[i]!] as const),
  ...[...'ghijklmnopqrst'].map((c, i) => [c, '0123456789abcd'[i]!] as const),
  ...[...'QRSTUVWXYZuvwxyz+/'].map((c) => [c, ' '] as const),
];

/** `base64` (an SQL expression) in issue10's text alphabet. */
function issue10Text(base64: string): string {
  return ISSUE10_TEXT_MAP.reduce((e, [from, to]) => `replace(${e}, '${from}', '${to}')`, `replace(${base64}, chr(10), '')`);
}

/** n random bytes (n a multiple of 64, or 48) as SQL: SHA-512 (or SHA-384) of random()'s next values. */
function randomBytes(n: number): string {
  if (n === 48) return 'sha384(float8send(random()))';
  return Array.from({ length: n / 64 }, () => 'sha512(float8send(random()))').join(' || ');
}

/**
 * Rows [from, to] of issue10's bench_docs, in one session whose random() starts from `seed`, so a
 * build is the same every time (two connections, each its own range and seed). About 297 bytes a
 * row in pg_dump's COPY text (385 MB for the database at -Z0; issue 10's: 382): a title of 16–40
 * and a body of 115–254 characters of random text, and a jsonb document of three random fields.
 */
function issue10DocsInsert(from: number, to: number, seed: number): string {
  return `
SELECT setseed(${seed});
INSERT INTO bench_docs (id, title, body, doc)
SELECT g,
       left(${issue10Text(`encode(${randomBytes(48)}, 'base64')`)}, 16 + floor(random() * 25)::int),
       left(${issue10Text(`encode(${randomBytes(192)}, 'base64')`)}, 115 + floor(random() * 140)::int),
       jsonb_build_object(
         'ref', md5(random()::text),
         'lang', (ARRAY['en','de','fr','es','it','nl','pl','pt'])[1 + floor(random() * 8)::int],
         'score', round((random() * 1000)::numeric, 2)
       )
FROM generate_series(${from}, ${to}) AS g`;
}

/** What buildDatabase builds: the default dataset at about sizeMb, or a fixed one (its quarter-size database for the quarter-size run). */
export type DbSpec = { dataset: 'default'; sizeMb: number } | { dataset: FixedDataset; scale: number; rows: number };

/** The dataset, in one line for the headings. */
export function datasetLine(opts: DatasetChoice): string {
  if (opts.dataset === 'default') return `dataset default (pgbench + md5-based bench_docs rows), ~${opts.sizeMb} MB database`;
  const f = FIXED[opts.dataset];
  return `dataset ${opts.dataset} (${f.what}: pgbench -s ${f.scale} + ${f.rows} bench_docs rows of random text and jsonb, ~${f.sizeMb} MB)`;
}

export function dbSpec(opts: DatasetChoice, quarter: boolean): DbSpec {
  if (opts.dataset === 'default') return { dataset: 'default', sizeMb: quarter ? Math.max(20, Math.round(opts.sizeMb / 4)) : opts.sizeMb };
  const f = FIXED[opts.dataset];
  return quarter ? { dataset: opts.dataset, scale: f.smallScale, rows: f.smallRows } : { dataset: opts.dataset, scale: f.scale, rows: f.rows };
}

/** "target N" for the default dataset, what issue 10 reported for issue10's, the nominal size for dominant's. */
export function sizeTarget(spec: DbSpec): string {
  if (spec.dataset === 'default') return `target ${spec.sizeMb}`;
  const f = FIXED[spec.dataset];
  const full = spec.rows === f.rows;
  if (spec.dataset === 'issue10') return full ? `issue 10's: ${f.sizeMb}` : `a quarter of issue 10's: ~${Math.round(f.sizeMb / 4)}`;
  return full ? `dataset dominant's: ~${f.sizeMb}` : 'a quarter of its rows';
}

export interface BuiltDb {
  name: string;
  sizeBytes: number;
  scale: number;
  docsRows: number;
  /** pg_total_relation_size of bench_docs: its share of sizeBytes shows how dominant it is. */
  docsBytes: number;
  buildMs: number;
}

function pgbenchInit(cluster: Cluster, name: string, scale: number): void {
  const pgbench = path.join(cluster.binDir, 'pgbench');
  const r = spawnSync(pgbench, ['-i', '-s', String(scale), '-q', name], { env: libpq(cluster, name), encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run ${pgbench}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`pgbench -i -s ${scale} failed (${r.signal ?? `exit ${r.status}`}):\n${r.stderr.trim()}`);
}

/**
 * The default dataset: pgbench tables for about half of `sizeMb`, then bench_docs rows (inserted
 * by two connections at once, one per core) up to the rest. issue10 and dominant: pgbench -s
 * `scale`, then `rows` bench_docs rows (two connections, always, each with its own seed), then the
 * primary key.
 * Then VACUUM ANALYZE and a CHECKPOINT so that no run pays for hint bits or dirty buffers left by
 * the load. Ordinary logged tables throughout.
 */
export async function buildDatabase(cluster: Cluster, name: string, spec: DbSpec): Promise<BuiltDb> {
  const t0 = Date.now();
  await cluster.createDatabase(name);
  let scale: number;
  let docsRows: number;
  if (spec.dataset !== 'default') {
    scale = spec.scale;
    docsRows = spec.rows;
    pgbenchInit(cluster, name, scale);
    await cluster.query(name, ISSUE10_DOCS_TABLE);
    const half = Math.ceil(docsRows / 2);
    // fixed ranges and seeds (not one worker per core): the same rows on any machine
    await Promise.all([cluster.query(name, issue10DocsInsert(1, half, 0.1)), cluster.query(name, issue10DocsInsert(half + 1, docsRows, -0.3))]);
    await cluster.query(name, 'ALTER TABLE bench_docs ADD PRIMARY KEY (id)');
  } else {
    const target = spec.sizeMb * MB;
    scale = Math.max(1, Math.round(spec.sizeMb / 2 / PGBENCH_MB_PER_SCALE));
    pgbenchInit(cluster, name, scale);
    await cluster.query(name, DOCS_TABLE);
    const sample = 2_000; // enough to estimate the bytes per row
    await cluster.query(name, docsInsert(1, sample));
    const [{ n: perRowText } = { n: '0' }] = await cluster.query<{ n: string }>(name, `SELECT (pg_total_relation_size('bench_docs') / ${sample}.0)::text AS n`);
    const perRow = Number(perRowText);
    const remaining = Math.max(0, Math.floor((target - (await databaseSize(cluster, name))) / perRow));
    const workers = Math.max(1, Math.min(os.cpus().length, 4));
    const chunk = Math.ceil(remaining / workers);
    const jobs: Promise<unknown>[] = [];
    for (let w = 0; w < workers; w++) {
      const from = sample + 1 + w * chunk;
      const to = Math.min(sample + remaining, from + chunk - 1);
      if (to >= from) jobs.push(cluster.query(name, docsInsert(from, to)));
    }
    await Promise.all(jobs);
    docsRows = sample + remaining;
  }
  await cluster.query(name, 'VACUUM ANALYZE');
  await cluster.query(name, 'CHECKPOINT');
  const [{ n: docsBytes } = { n: '0' }] = await cluster.query<{ n: string }>(name, "SELECT pg_total_relation_size('bench_docs')::text AS n");
  return { name, sizeBytes: await databaseSize(cluster, name), scale, docsRows, docsBytes: Number(docsBytes), buildMs: Date.now() - t0 };
}
