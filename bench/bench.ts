/**
 * `npm run bench [-- --dataset NAME --size-mb N --runs N]`: is basement-backup as fast as plain
 * pg_dump and pg_restore, and does its memory stay small and flat as the database grows?
 *
 * It starts a throwaway cluster and an S3-API server (s3rver, in this process, on 127.0.0.1, its
 * data under the benchmark's temp directory) and builds a database from one of three datasets
 * (--dataset, or BENCH_DATASET; the headings and the summary name it; bench/datasets.ts):
 *
 *   default  about BENCH_SIZE_MB (default 500; or --size-mb): pgbench tables for roughly half of
 *            it, and a table bench_docs with text and jsonb columns (md5-based text) for the rest.
 *            Its data compresses cheaply: pg_dump -Fc (gzip) takes about 2.8× as long as -Z0.
 *   issue10  the database issue 10 set its targets on, "a 510 MB database (pgbench scale 20 plus
 *            600,000 rows of random text and jsonb)": `pgbench -i -s 20` and 600,000 bench_docs
 *            rows (id bigint PRIMARY KEY, title, body, doc jsonb) of random text made to compress
 *            like issue 10's data (see ISSUE10_TEXT_MAP). Measured on the 2-core development
 *            machine, quiet, against issue 10's figures (in brackets): -Z0 385 MB in 2.3–2.5 s
 *            (382 MB, 2.9–3.4 s); gzip 95.9 MB in 10.5–10.7 s, ~4.5× -Z0's time (95.3 MB,
 *            14.4–14.8 s); -Z1 101.5 MB (98.1); -Z0 | zstd -1 87.2 MB (81.0); pg_database_size
 *            546 MB (510). Its size is fixed: --size-mb is refused with it (a usage error), and
 *            BENCH_SIZE_MB is ignored, with a note. The rows are inserted by two connections, each
 *            with its own range of ids and setseed(), so every build has the same rows. The issue
 *            10 table shows issue 10's figures beside the measured ones.
 *   dominant "a database with one dominant table" (issue 19): `pgbench -i -s 1` and 1,270,000
 *            bench_docs rows of issue10's generator (the same columns, text and seeds), ~500 MB
 *            (374.5 bytes a row on disk, measured: the row count is chosen for the size), with
 *            bench_docs ~95 % of it (the build line prints its share). Fixed size, like issue10:
 *            --size-mb is refused, BENCH_SIZE_MB ignored with a note.
 *
 * Then, in each of --runs rounds (default and minimum 3), it times fourteen commands, in an order
 * rotated by one every round:
 *
 *   a.  plain `pg_dump -Fc -f FILE`, pg_dump's default compression (gzip, level 6);
 *   a0. plain `pg_dump -Fc -Z0 -f FILE`, uncompressed: the floor of any backup (issue 10);
 *   b.  `basement-backup backup` with BACKUP_DIGEST=off (issue 2: the backup pipeline alone; since
 *       issue 10 compressed by default with the zstd program: `pg_dump -Fc --compress=0` into
 *       `zstd -q -c -1 -T<cores, at most 4>`, stored as `<id>.dump.zst`);
 *   c.  `basement-backup backup` with its defaults, i.e. BACKUP_DIGEST=full (issue 3);
 *   d.  `basement-backup backup` to the local directory and the S3 server at once, BACKUP_DIGEST=off
 *       (issue 4; only "off", to keep the run short: c − b is the digest's cost);
 *   e.  plain `pg_restore -d DB FILE` (default options, single job) of the newest file from a into
 *       a freshly created empty database;
 *   f.  `basement-backup verify ID` of the newest backup from c: checksum, restore into a scratch
 *       database (with pg_restore --jobs, by default the cores, at most 4), row counts and digests
 *       compared, scratch database dropped (issue 3);
 *   g.  `basement-backup backup` encrypted (BACKUP_AGE_RECIPIENTS, a key made for the run),
 *       BACKUP_DIGEST=off (issue 9: against b);
 *   h.  `basement-backup verify ID` of the newest backup from g, decrypting with the identity
 *       (issue 9; g records no digests, so h checks the checksums and restores, and counts nothing);
 *   i.  `basement-backup restore ID --jobs 2 --yes --target-db NAME` of the newest backup from b
 *       into a new database (issue 10); afterwards, outside the clock, the rows of bench_docs in
 *       the restored database are counted against the source (so i cannot pass by restoring
 *       nothing), and the database is dropped;
 *   j0. plain `pg_restore -j2 -d DB FILE` of the newest file from a0 into a freshly created empty
 *       database: an uncompressed archive with its data offsets, the floor under i (no target);
 *   j2. plain `pg_restore -j2 -d DB FILE` of the newest file from a (pg_dump's own gzip file) into
 *       a freshly created empty database: issue 19's goal for r (until issue 19 it was timed once,
 *       in the reference table; j2's median takes that row now);
 *   r.  `basement-backup restore ID --yes --target-db NAME` of the newest backup from b, like i
 *       but without --jobs: the jobs restore chooses by default (it may choose one on 2 cores;
 *       the summary prints what it reported); its rows checked and its database dropped like i's;
 *   r0. the restore_command the manifest of that same backup records, `createdb NEWDB && zstd -dc
 *       FILE | pg_restore -d NEWDB`: the createdb outside the clock (a fresh empty database, like
 *       e's), the rest as recorded, NEWDB replaced by that database, under `bash -o pipefail -c`
 *       in the backup's directory, the cluster's bin directory first on PATH (issue 19: restore
 *       must not be slower than the command it prints).
 *
 * and reports per round and as medians of the per-round ratios:
 *
 *   b/a ≤ 0.40, b/a0 ≤ 1.3, and b's file ≤ 0.95 × a's (issue 10; they replace issue 2's b/a ≤ 1.05,
 *     set when both compressed alike; issue 19 keeps b/a ≤ 0.40);
 *   c/a ≤ 0.45: the default backup, with its digests, against pg_dump -Fc (issue 19);
 *   c/b ≤ 1.25: what the default digest adds to a backup (issue 3, kept by issue 10);
 *   d/b ≤ 1.15 (issue 10: the upload's cost at the same compression; it replaces issue 4's
 *     d/a ≤ 1.15, which is still reported, without a target) and d's peak RSS ≤ 150 MB (issue 4);
 *   i/e ≤ 0.85: a restore with two jobs against plain single-job pg_restore (issue 10), with
 *     j0/e beside it, without a target;
 *   r/r0 ≤ 1.05: the default restore against the restore_command it prints (issue 19);
 *   r/j2 ≤ 1.00: the default restore against `pg_restore -j2` of pg_dump's own file, issue 19's
 *     goal; r's restored rows are checked like i's, and the jobs it reported are printed;
 *   f/e ≤ 1.0 (issue 10; issue 3's was 1.3);
 *   b's and f's peak RSS ≤ 120 MB, b's not growing with database size (issues 2 and 10);
 *   g/b ≤ 1.10, and g's and h's peak RSS ≤ 120 MB (issue 9).
 *
 * In the first round only (to keep the run within its time budget), after that round's fourteen
 * commands, it also times once the reference commands of issue 10's table: `pg_dump -Fc -Z1 -f F`,
 * `pg_dump -Fc -Z0 | zstd -3 -T2 > F`, `pg_dump -Fc -Z0 | zstd -1 -T2 > F`, `pg_dump -Fd -j2 -f DIR`
 * and `zstd -dc F.zst | pg_restore -d DB` (of the zstd -1 file), and prints them in one table
 * (command | time | size) with a, a0, e, j2, j0 and r0 (medians) and the project's rows (medians).
 * (`pg_restore -j2 -d DB F` of a's file, once a reference command, is j2.)
 *
 * After the rounds, once per run, the start-up table of issue 19 ("a command loads only what it
 * needs"; bench/startup.ts), on the full-size database and b's newest backup: the median and the
 * minimum of 5 runs (interleaved, rotated, each after a CHECKPOINT and `sync`) of `node -e 0`
 * (Node's own floor), `basement-backup --version`, `--help`, `list --json`, `status --json`,
 * `restore ID --dry-run` and `config check`, from spawn to exit; and of the time from spawn to the
 * first action of `restore ID --yes --target-db NAME` (no --jobs) and of `backup` (defaults): the
 * millisecond `timestamp` of the first line of the JSON log (a fresh LOG_DIR per run,
 * LOG_LEVEL=debug) that marks it ("restoring", and pg_restore's first line; "backup started"),
 * less Date.now() taken just before the spawn. A column gives each median less `node -e 0`'s.
 *
 * `--baseline DIR` (another checkout of basement-backup, built) also times that build's backup as
 * b0, like b and right beside it in every round (before b in even rounds, after it in odd ones),
 * and reports b/a against b0/a: a change must not slow the backup down (issue 8: within 0.02).
 *
 * A quarter-size database (default: a quarter of the size; issue10: pgbench -s 5 and 150,000
 * bench_docs rows; dominant: pgbench -s 1 and 317,500 rows, ~142 MB) is backed up once (as b)
 * first, to show the RSS does not grow with the database. The time budget (TIME_BUDGET_S) is the
 * default dataset's at 500 MB; issue10 and dominant run longer and have none. A missed target is reported, not an error: the exit status is non-zero only
 * when something broke (a command failed, the cluster would not start, bad arguments, a backup
 * not compressed with zstd, a restore with fewer rows than the source).
 *
 * Fairness notes:
 * - One unmeasured pg_dump warms the OS page cache and shared buffers before the measured runs
 *   (and leaves the first file for e). Every measured command (the reference commands too) is
 *   preceded by a CHECKPOINT and `sync`, so none pays for the dirty pages or writes of the one
 *   before (pg_restore writes a whole database).
 * - The same pg_dump and pg_restore binaries, every output on the same disk (basement-backup's
 *   BACKUP_TEMP_DIR, where restore and verify decompress a `.zst` archive for pg_restore --jobs,
 *   is under the benchmark's directory too), each command's previous output deleted before it
 *   runs (the bucket emptied too, for d). basement-backup gets no BACKUP_COMPRESSION: its
 *   default, zstd -1, is what is measured; a keeps pg_dump's default (gzip) for -Fc, as issue 10
 *   compares with it, and a0 none.
 * - Every side fsyncs its output: pg_dump -f syncs the file (or directory) unless --no-sync,
 *   basement-backup syncs the file and its directory before the rename, and the piped reference
 *   commands end with `sync FILE`, since a shell redirect syncs nothing.
 * - basement-backup's wall time is everything its command does, i.e. what a user waits for:
 *   Node start-up, pre-flight checks, the digest (c), the `pg_restore --list` check of the
 *   archive, the roles file, the manifest, retention; for d the upload, which s3rver (running in
 *   this benchmark process, on the same 2 cores and disk) writes twice: parts, then the joined
 *   object. For f: creating and dropping the scratch database, the sha256 check, decompressing to
 *   a temporary file, the restore and the digest of the restored tables. For i: finding the
 *   backup, creating the new database, decompressing to a temporary file, pg_restore --jobs 2,
 *   and counting every table's rows; the new database is dropped outside the clock (r: the same
 *   with the jobs restore chooses). e, j0, j2, r0 (and the reference restores) are timed for
 *   pg_restore (r0: zstd and pg_restore) alone: `CREATE DATABASE` (r0's `createdb`) and `DROP
 *   DATABASE` happen outside the clock, which is the stricter comparison for f, i and r.
 * - e runs pg_restore with its defaults (no --jobs): issue 10's targets for i and f are against
 *   plain single-job pg_restore; j2 is `pg_restore -j2`, issue 19's goal for r.
 *
 * Peak RSS: `/proc/<pid>/status` VmHWM (the kernel's high-water mark of the process's resident
 * set) of the measured process is polled every 50 ms until it exits, and the largest value seen
 * is reported. GNU time's %M is NOT used: it reports the ru_maxrss that wait4() returns for its
 * child, which on Linux is the maximum over the child *and every descendant it waited for* — it
 * would report pg_dump's RSS whenever pg_dump's is the larger. (Checked: `/usr/bin/time -f %M`
 * around a 42 MB Node process whose child allocates 400 MB prints 451804 kB.) VmHWM belongs to
 * one process only, so pg_dump, pg_restore and zstd, being separate processes, are not counted.
 * The last < 50 ms before exit can escape the poll; VmHWM being a high-water mark, only growth in
 * that final slice could be missed. The reference commands' RSS is not reported (for the piped
 * ones it would be bash's).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';
import { startCluster, type Cluster } from '../scripts/lib/cluster';
import { generateIdentity } from '../src/crypto/age';
import { buildDatabase, datasetLine, DATASETS, dbSpec, FIXED, libpq, sizeTarget, type BuiltDb, type Dataset } from './datasets';
import { measure, stopCurrent, syncDisks, type Measured } from './measure';
import { load, MB, mb, median, say, secs, spread, table, verdict } from './report';
import { HTTP_CONCURRENCY, httpEffect, type HttpEffect } from './http';
import { pitrBench, pitrCleanup } from './pitr';
import { runStartup, STARTUP_RUNS, startupTable } from './startup';

const TARGET = {
  /** b/a: issue 10, kept by issue 19 (issue 2's was ≤ 1.05, when b compressed like pg_dump) */
  backupRatio: 0.4,
  /** b/a0, against uncompressed pg_dump: issue 10 */
  floorRatio: 1.3,
  /** b's file size / a's: issue 10 */
  sizeRatio: 0.95,
  /** b's peak RSS: issue 2 (and issue 10) */
  backupRssMb: 120,
  /** c/b: issue 3 (kept by issue 10) */
  digestRatio: 1.25,
  /** d/b: issue 10 (issue 4's was d/a ≤ 1.15) */
  s3Ratio: 1.15,
  /** d's peak RSS: issue 4 */
  s3RssMb: 150,
  /** i/e: issue 10 */
  restoreJobsRatio: 0.85,
  /** f/e: issue 10 (issue 3's was 1.3) */
  verifyRatio: 1.0,
  /** f's peak RSS: issue 10 */
  verifyRssMb: 120,
  /** g/b: issue 9 */
  encryptRatio: 1.1,
  /** g's and h's peak RSS: issue 9 */
  encryptRssMb: 120,
  /** c/a: the default backup (with digests) against pg_dump -Fc: issue 19 */
  defaultBackupRatio: 0.45,
  /** r/r0: the default restore against the restore_command its manifest prints: issue 19 */
  restoreCommandRatio: 1.05,
  /** r/j2: the default restore against pg_restore -j2 of pg_dump's own file: issue 19's goal */
  restoreGoalRatio: 1.0,
};
/** The RSS counts as "not growing" when the full-size peak is within this of the quarter-size peak. */
const RSS_GROWTH_TOLERANCE_MB = 10;
/** What one default run should take on the 2-core development machine. */
const TIME_BUDGET_S = 300;
const S3_BUCKET = 'bench';
const S3_PREFIX = 'basement-backup/';
/** The database e and the reference restores restore into, created before each and dropped after, outside the clock. */
const RESTORE_DB = 'bench_pg_restore';
/** i: `restore --jobs` with this many jobs, into this new database (dropped after, outside the clock). */
const RESTORE_JOBS = 2;
const RESTORE_JOBS_DB = 'bench_restore_jobs';
/** r: `restore` without --jobs (the jobs it chooses), into this new database (dropped after, outside the clock). */
const RESTORE_DEFAULT_DB = 'bench_restore_default';
/** The table whose rows i's and r's restored databases must have as many of as the source. */
const COUNTED_TABLE = 'bench_docs';

const repoRoot = path.resolve(__dirname, '..', '..');
// The installed command (npm's bin): its shebang runs Node with the flags basement-backup is meant to run with.
const cliMain = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

interface Options {
  dataset: Dataset;
  /** The default dataset's target size in MB (--size-mb / BENCH_SIZE_MB); for a fixed dataset, its nominal size. */
  sizeMb: number;
  runs: number;
  /** --baseline: the main.js of another build, timed as b0 beside b. */
  baseline?: string;
  /** Said before the run starts: e.g. that BENCH_SIZE_MB is ignored for a fixed dataset. */
  notes: string[];
  /** --http-rounds: pairs of the daemon's backup without and with the HTTP server under load (0: none). */
  httpRounds: number;
  /** --only-http: build the database and time only those pairs. */
  onlyHttp: boolean;
  /** --only-pitr: only point-in-time recovery beside pgBackRest (bench/pitr.ts), on its own cluster. */
  onlyPitr: boolean;
}

class UsageError extends Error {}

function positiveInt(name: string, value: string, min: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`${name}: "${value}" is not a whole number ≥ ${min}`);
  return Number(value);
}

const USAGE =
  'usage: npm run bench [-- --dataset NAME] [--size-mb N] [--runs N] [--baseline DIR]\n' +
  '  --dataset NAME  default, issue10 or dominant (default: $BENCH_DATASET or default). default: pgbench tables for\n' +
  "                  about half of --size-mb, md5-based bench_docs rows for the rest. issue10: issue 10's database,\n" +
  '                  pgbench -s 20 plus 600,000 bench_docs rows of random text and jsonb (~510 MB). dominant: one\n' +
  "                  dominant table (issue 19), pgbench -s 1 plus 1,270,000 of issue10's bench_docs rows (~500 MB).\n" +
  '                  issue10 and dominant have a fixed size: --size-mb is refused with them\n' +
  '  --size-mb N     default dataset only: database size in MB (default $BENCH_SIZE_MB or 500, at least 40)\n' +
  '  --runs N        rounds (default 3, at least 3)\n' +
  '  --baseline DIR  another built checkout of basement-backup, timed as b0 beside b\n' +
  "  --http-rounds N the daemon's backup without and with the HTTP server under load, N pairs (default: --runs; 0: none)\n" +
  '  --only-http     only those pairs (with --size-mb 40 --http-rounds 2: a quick look, a few minutes)\n' +
  "  --only-pitr     only point-in-time recovery (issue 23) beside pgBackRest, --runs rounds on issue 10's database\n" +
  '                  (bench/pitr.ts; needs pgbackrest, runs as root: pgBackRest and pitr-restore run as postgres)\n';

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      dataset: { type: 'string' },
      'size-mb': { type: 'string' },
      runs: { type: 'string' },
      baseline: { type: 'string' },
      'http-rounds': { type: 'string' },
      'only-http': { type: 'boolean' },
      'only-pitr': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const datasetFrom = values.dataset !== undefined ? '--dataset' : 'BENCH_DATASET';
  const datasetRaw = values.dataset ?? process.env.BENCH_DATASET ?? 'default';
  if (!(DATASETS as readonly string[]).includes(datasetRaw))
    throw new UsageError(`${datasetFrom}: "${datasetRaw}" is not a dataset; the datasets are ${DATASETS.join(', ')}`);
  const dataset = datasetRaw as Dataset;
  const runs = positiveInt('--runs', values.runs ?? '3', 3);
  const baseline = values.baseline === undefined ? undefined : baselineCli(values.baseline);
  const notes: string[] = [];
  const http = {
    httpRounds: positiveInt('--http-rounds', values['http-rounds'] ?? String(runs), values['only-http'] ? 1 : 0),
    onlyHttp: values['only-http'] ?? false,
    onlyPitr: values['only-pitr'] ?? false,
  };
  if (http.onlyPitr && (values.dataset !== undefined || values['size-mb'] !== undefined || http.onlyHttp))
    throw new UsageError("--only-pitr: it runs on issue 10's database (fixed): leave out --dataset, --size-mb and --only-http");
  if (dataset !== 'default') {
    const f = FIXED[dataset];
    // an explicit --size-mb contradicts the fixed size; BENCH_SIZE_MB may just be set in the environment
    if (values['size-mb'] !== undefined)
      throw new UsageError(
        `--size-mb: the ${dataset} dataset (${datasetFrom}) has a fixed size (pgbench -s ${f.scale} + ${f.rows} bench_docs rows, ` +
          `about ${f.sizeMb} MB): leave out --size-mb, or use --dataset default`,
      );
    if (process.env.BENCH_SIZE_MB !== undefined)
      notes.push(`BENCH_SIZE_MB=${process.env.BENCH_SIZE_MB} is ignored: the ${dataset} dataset has a fixed size (about ${f.sizeMb} MB)`);
    return { dataset, sizeMb: f.sizeMb, runs, baseline, notes, ...http };
  }
  const sizeRaw = values['size-mb'] ?? process.env.BENCH_SIZE_MB ?? '500';
  return {
    dataset,
    sizeMb: positiveInt(values['size-mb'] !== undefined ? '--size-mb' : 'BENCH_SIZE_MB', sizeRaw, 40),
    runs,
    baseline,
    notes,
    ...http,
  };
}

function baselineCli(dir: string): string {
  const main = path.resolve(dir, 'dist', 'src', 'cli', 'main.js');
  if (!fs.existsSync(main)) throw new UsageError(`--baseline: ${main} is missing: run \`npm run build\` in ${dir}`);
  return main;
}

// ---------------------------------------------------------------------------------------------
// The commands timed every round

type Key = 'a' | 'a0' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g' | 'h' | 'i' | 'j0' | 'j2' | 'r' | 'r0';
// b before i, r and r0, a before e and j2, a0 before j0, c before f and g before h in the first round: each has something to read then
const KEYS: readonly Key[] = ['a', 'a0', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j0', 'j2', 'r', 'r0'];
/** The commands that are not basement-backup. */
const PLAIN: readonly Key[] = ['a', 'a0', 'e', 'j0', 'j2', 'r0'];
const LABEL: Record<Key, string> = {
  a: 'pg_dump -Fc -f FILE (gzip)',
  a0: 'pg_dump -Fc -Z0 -f FILE',
  b: 'backup, BACKUP_DIGEST=off',
  c: 'backup, BACKUP_DIGEST=full (default)',
  d: 'backup to local + S3, BACKUP_DIGEST=off',
  e: 'pg_restore -d DB FILE (empty db)',
  f: 'verify ID (a backup from c)',
  g: 'backup, encrypted (age), BACKUP_DIGEST=off',
  h: 'verify ID (an encrypted backup from g)',
  i: `restore ID --jobs ${RESTORE_JOBS} (b's backup, new db)`,
  j0: `pg_restore -j${RESTORE_JOBS} -d DB FILE (a0's file, empty db)`,
  j2: `pg_restore -j${RESTORE_JOBS} -d DB FILE (a's file, empty db)`,
  r: "restore ID, default jobs (b's backup, new db)",
  r0: "b's restore_command: zstd -dc FILE | pg_restore -d DB (empty db)",
};

/** b0: b by the --baseline build. */
type BackupKey = 'b' | 'b0' | 'c' | 'd' | 'g';

/** The data file each backup must write: zstd by default (issue 10). */
const DATA_FILE: Record<BackupKey, RegExp> = {
  b: /\.dump\.zst$/,
  c: /\.dump\.zst$/,
  d: /\.dump\.zst$/,
  g: /\.dump\.zst\.age$/,
  // the --baseline build may be one from before zstd
  b0: /\.dump(\.zst)?$/,
};

interface Dirs {
  base: string;
  /** a's file (kept for e until the next a). */
  pgDumpOut: string;
  /** a0's file (removed at once). */
  pgDumpZ0Out: string;
  /** The reference commands' outputs (round 1). */
  reference: string;
  /** BACKUP_DIR of b, b0, c, d and g (and of the quarter-size run of b). */
  backups: Record<BackupKey, string>;
  /** BACKUP_TEMP_DIR: where restore and verify decompress a `.zst` archive for pg_restore --jobs. */
  tmp: string;
  /** s3rver's directory; the bucket is a folder in it. */
  s3: string;
  logDir: string;
  work: string;
  /** The start-up probes' backups and fresh log directories. */
  startup: string;
}

interface S3 {
  server: S3rver;
  endpoint: string;
}

/** A backup kept for a later command: its id (from `list --json`) and its data file. */
interface Kept {
  id: string;
  file: string;
  /** Its manifest's restore_command (the by-hand restore it prints, run in the file's directory). */
  restoreCommand?: string;
}

interface Bench {
  cluster: Cluster;
  dirs: Dirs;
  s3: S3;
  /** The zstd program for the reference commands: the one basement-backup finds on PATH. */
  zstd: string;
  /** The file e restores: the newest one a (or the warm-up) wrote. */
  dumpFile?: string;
  /** The file j0 restores: the newest one a0 (or the warm-up) wrote. */
  z0File?: string;
  /** The backup f verifies: the newest one c took. */
  verify?: Kept;
  /** The backup h verifies: the newest one g took. */
  encrypted?: Kept;
  /** The backup i, r and r0 restore: the newest one b took. */
  restore?: Kept;
  /** Rows of COUNTED_TABLE in the source database. */
  sourceRows?: number;
  /** g's recipient and h's identity file, made for this run. */
  age: { publicKey: string; identityFile: string };
}

interface Sample {
  wallMs: number;
  peakRssBytes: number;
  /** Size of the dump written (a, a0, b–d, g) or restored (e, f, h, i, j0, j2, r, r0). */
  bytes: number;
  /** f: the restore part of the drill, as verify reports it. */
  restoreMs?: number;
  /** i, r: rows of COUNTED_TABLE in the restored database. */
  restoredRows?: number;
  /** i, r: the pg_restore jobs restore says it ran (1 when it names none). */
  jobs?: number;
  /** b: the manifest's `compression` and `dump_size_bytes` (pg_dump's output before compression). */
  manifest?: { compression: string; dumpSizeBytes: number | undefined };
}

function emptyDir(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    // keep basement-backup's state directory (.basement-backup: locks and failure state)
    if (e.name.startsWith('.') && e.isDirectory()) continue;
    fs.rmSync(path.join(dir, e.name), { recursive: true, force: true });
  }
}

/** Removes every object (and unfinished multipart upload) from the bucket, keeping the bucket. */
function emptyBucket(dirs: Dirs): void {
  const bucket = path.join(dirs.s3, S3_BUCKET);
  for (const name of fs.readdirSync(bucket)) fs.rmSync(path.join(bucket, name), { recursive: true, force: true });
}

function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

/** Lets the cluster and the OS write out what the previous command left dirty, outside the clock. */
async function settle(cluster: Cluster): Promise<void> {
  await cluster.query('postgres', 'CHECKPOINT');
  syncDisks();
}

/** A new, empty database `name` (createdb -T template0, as verify creates its scratch database), outside the clock. */
async function freshDatabase(cluster: Cluster, name: string): Promise<void> {
  await cluster.dropDatabase(name);
  await cluster.query('postgres', `CREATE DATABASE ${name} TEMPLATE template0`);
}

async function countRows(cluster: Cluster, database: string): Promise<number> {
  const rows = await cluster.query<{ n: string }>(database, `SELECT count(*)::text AS n FROM ${COUNTED_TABLE}`);
  return Number(rows[0]!.n);
}

/** The program `name` on PATH, as basement-backup finds it; an error when there is none. */
function onPath(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir || '.', name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  throw new Error(`no ${name} program on PATH: basement-backup's default compression (issue 10) needs it (apt-get install ${name})`);
}

function bbEnv(b: Bench, db: string, backupDir: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: b.dirs.work,
    DB_HOST: b.cluster.host,
    DB_PORT: String(b.cluster.port),
    DB_USER: b.cluster.user,
    DB_PASSWORD: b.cluster.password,
    DB_NAME: db,
    PG_BIN_DIR: b.cluster.binDir,
    BACKUP_DIR: backupDir,
    BACKUP_TEMP_DIR: b.dirs.tmp,
    LOG_DIR: b.dirs.logDir,
    BACKUP_MIN_FREE_MB: '0',
    BACKUP_RETENTION_MIN_COUNT: '100000',
    ...extra,
  };
}

function s3Env(b: Bench): Record<string, string> {
  return {
    S3_ENDPOINT: b.s3.endpoint,
    S3_REGION: 'us-east-1',
    S3_BUCKET,
    S3_PREFIX,
    S3_ACCESS_KEY_ID: 'S3RVER',
    S3_SECRET_ACCESS_KEY: 'S3RVER',
    S3_FORCE_PATH_STYLE: 'true',
  };
}

/** a (pg_dump's default compression; its file is kept for e until the next a) or a0 (-Z0; its file removed at once). */
async function runPgDump(b: Bench, db: string, key: 'a' | 'a0' = 'a'): Promise<Sample> {
  const out = key === 'a' ? b.dirs.pgDumpOut : b.dirs.pgDumpZ0Out;
  emptyDir(out);
  if (key === 'a') b.dumpFile = undefined;
  else b.z0File = undefined;
  await settle(b.cluster);
  const file = path.join(out, `${db}.dump`);
  const args = key === 'a' ? ['-Fc', '-f', file] : ['-Fc', '-Z0', '-f', file];
  const m = await measure(path.join(b.cluster.binDir, 'pg_dump'), args, { env: libpq(b.cluster, db), cwd: b.dirs.work });
  const bytes = fs.statSync(file).size;
  if (key === 'a') b.dumpFile = file;
  else b.z0File = file;
  return { wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, bytes };
}

/**
 * b, c, d or g (b0: b by the --baseline build, in its own directory). The newest backup of b
 * (for i), c (for f) and g (for h) stays until the next run of the same command; the others are
 * removed at once.
 */
async function runBackup(b: Bench, db: string, key: BackupKey, cli = cliMain): Promise<Sample> {
  const dir = b.dirs.backups[key];
  emptyDir(dir);
  if (key === 'b') b.restore = undefined;
  if (key === 'c') b.verify = undefined;
  if (key === 'g') b.encrypted = undefined;
  if (key === 'd') emptyBucket(b.dirs);
  await settle(b.cluster);
  const extra: Record<string, string> = key === 'c' ? {} : { BACKUP_DIGEST: 'off' };
  if (key === 'g') extra.BACKUP_AGE_RECIPIENTS = b.age.publicKey;
  const env = bbEnv(b, db, dir, key === 'd' ? { ...extra, ...s3Env(b) } : extra);
  // cwd is an empty directory, so no ./.env is picked up.
  const m = await measure(cli, ['backup', '--label', `bench ${key}`], { env, cwd: b.dirs.work });
  const names = fs.readdirSync(dir).filter((n) => !n.startsWith('.'));
  const dumps = names.filter((n) => DATA_FILE[key].test(n));
  if (dumps.length !== 1) {
    throw new Error(
      `expected one file matching ${String(DATA_FILE[key])} in ${dir} after basement-backup backup, found: ${names.join(', ') || 'nothing'}` +
        ' (without a zstd program basement-backup falls back to gzip: is zstd on PATH?)',
    );
  }
  const file = dumps[0]!;
  const bytes = fs.statSync(path.join(dir, file)).size;
  if (key === 'd') {
    // s3rver keeps each object as "<key>._S3rver_object"
    const objects = filesUnder(path.join(b.dirs.s3, S3_BUCKET)).filter((f) => f.endsWith(`${file}._S3rver_object`));
    const sizes = objects.map((f) => fs.statSync(f).size);
    if (sizes.length !== 1 || sizes[0] !== bytes) {
      throw new Error(`expected ${file} (${bytes} bytes) in the bucket after the backup to local + S3, found sizes: ${sizes.join(', ') || 'none'}`);
    }
    emptyBucket(b.dirs);
  }
  const sample: Sample = { wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, bytes };
  if (key === 'b' || key === 'c' || key === 'g') {
    const listed = listed1(b, db, dir, file);
    const kept: Kept = { id: listed.id, file: path.join(dir, file), restoreCommand: listed.restore_command };
    if (key === 'b') {
      b.restore = kept;
      sample.manifest = { compression: String(listed.compression), dumpSizeBytes: listed.dump_size_bytes };
    } else if (key === 'c') b.verify = kept;
    else b.encrypted = kept;
  } else emptyDir(dir);
  return sample;
}

interface Listed {
  id: string;
  file: string;
  compression?: string | number | null;
  dump_size_bytes?: number;
  restore_command?: string;
}

/** The backup stored as `file` in `dir`, as `basement-backup list --json` shows it (not timed). */
function listed1(b: Bench, db: string, dir: string, file: string): Listed {
  const r = spawnSync(cliMain, ['list', '--json'], { env: bbEnv(b, db, dir, {}), cwd: b.dirs.work, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`basement-backup list --json failed (${r.signal ?? `exit ${r.status}`}):\n${r.stderr.trim()}`);
  const list = JSON.parse(r.stdout) as Listed[];
  const hit = list.filter((m) => path.basename(m.file) === file);
  if (hit.length !== 1) throw new Error(`basement-backup list --json in ${dir} does not show ${file} once: ${r.stdout.trim()}`);
  return hit[0]!;
}

/**
 * e: plain single-job pg_restore of a's file; j0: pg_restore --jobs of a0's, the floor of i (an
 * uncompressed archive pg_dump wrote into a file, with its data offsets: what i restores from
 * once it has decompressed the backup, without i's start, copy and checks); j2: pg_restore --jobs
 * of a's, pg_dump's own gzip file as it is stored (issue 19's goal for r).
 */
async function runPgRestore(b: Bench, key: 'e' | 'j0' | 'j2' = 'e'): Promise<Sample> {
  const file = key === 'j0' ? b.z0File : b.dumpFile;
  if (!file) throw new Error(`no pg_dump file to restore for ${key}`);
  await freshDatabase(b.cluster, RESTORE_DB);
  await settle(b.cluster);
  const args = key === 'e' ? ['-d', RESTORE_DB, file] : [`-j${RESTORE_JOBS}`, '-d', RESTORE_DB, file];
  const m = await measure(path.join(b.cluster.binDir, 'pg_restore'), args, { env: libpq(b.cluster, RESTORE_DB), cwd: b.dirs.work });
  await b.cluster.dropDatabase(RESTORE_DB);
  return { wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, bytes: fs.statSync(file).size };
}

/** f (a backup from c) or h (an encrypted one from g, decrypted with the run's identity). */
async function runVerify(b: Bench, db: string, key: 'f' | 'h'): Promise<Sample> {
  const kept = key === 'f' ? b.verify : b.encrypted;
  if (!kept) throw new Error(`no backup from ${key === 'f' ? 'c' : 'g'} to verify`);
  const dir = path.dirname(kept.file);
  await settle(b.cluster);
  const extra: Record<string, string> = key === 'h' ? { BACKUP_AGE_IDENTITY_FILE: b.age.identityFile } : {};
  const m = await measure(cliMain, ['verify', kept.id, '--json'], { env: bbEnv(b, db, dir, extra), cwd: b.dirs.work });
  const v = JSON.parse(m.stdout) as {
    ok: boolean;
    checksum_ok: boolean;
    restore_ms: number | null;
    tables_checked: number;
    rows_checked: number;
    error: string | null;
  };
  // verify exits non-zero on a failed drill (measure rejects then), but check what it says too
  // (g takes no digests: h's drill restores and checks the checksums, and compares no table)
  if (!v.ok || !v.checksum_ok || (key === 'f' && (v.tables_checked === 0 || v.rows_checked === 0)))
    throw new Error(`basement-backup verify ${kept.id} did not pass: ${m.stdout.trim()}`);
  return { wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, bytes: fs.statSync(kept.file).size, restoreMs: v.restore_ms ?? undefined };
}

/** The pg_restore jobs restore's last line names ("(2 pg_restore jobs)"); 1 when it names none. */
function reportedJobs(stdout: string): number {
  const m = /\((\d+) pg_restore jobs\)/.exec(stdout);
  return m ? Number(m[1]) : 1;
}

/**
 * i: `restore ID --jobs 2 --yes --target-db NAME`, r: the same without --jobs (the jobs restore
 * chooses), of the newest backup from b, into a database that does not exist (restore creates
 * it). Outside the clock: the restored rows of COUNTED_TABLE against the source's, and the
 * database dropped.
 */
async function runRestore(b: Bench, db: string, key: 'i' | 'r'): Promise<Sample> {
  const kept = b.restore;
  if (!kept) throw new Error('no backup from b to restore');
  const target = key === 'i' ? RESTORE_JOBS_DB : RESTORE_DEFAULT_DB;
  await b.cluster.dropDatabase(target);
  await settle(b.cluster);
  const args = ['restore', kept.id, ...(key === 'i' ? ['--jobs', String(RESTORE_JOBS)] : []), '--yes', '--target-db', target];
  const m = await measure(cliMain, args, { env: bbEnv(b, db, path.dirname(kept.file), {}), cwd: b.dirs.work });
  const jobs = reportedJobs(m.stdout);
  // restore falls back to one job (with a note) when it cannot make a decompressed copy
  if (key === 'i' && jobs !== RESTORE_JOBS) {
    await b.cluster.dropDatabase(target);
    throw new Error(`basement-backup ${args.join(' ')} did not run ${RESTORE_JOBS} pg_restore jobs:\n${m.stdout.trim()}\n${m.stderr.trim()}`);
  }
  const restoredRows = await countRows(b.cluster, target);
  await b.cluster.dropDatabase(target);
  b.sourceRows ??= await countRows(b.cluster, db);
  if (restoredRows !== b.sourceRows)
    throw new Error(`basement-backup ${args.join(' ')}: ${COUNTED_TABLE} has ${restoredRows} rows in the restored database, ${b.sourceRows} in ${db}`);
  return { wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, bytes: fs.statSync(kept.file).size, restoredRows, jobs };
}

/** The manifest's restore_command as recorded: createdb NEWDB, then the restore proper. */
const RESTORE_COMMAND = /^createdb NEWDB && (.*\bNEWDB\b.*)$/;

/**
 * r0: the restore_command of the newest backup from b, as its manifest records it (`createdb NEWDB
 * && zstd -dc FILE | pg_restore -d NEWDB`, in the file's directory). The createdb happens outside
 * the clock, like e's; the rest runs under `bash -o pipefail` with NEWDB the fresh database, and
 * the cluster's pg_restore first on PATH (the one basement-backup runs, PG_BIN_DIR).
 */
async function runRestoreCommand(b: Bench): Promise<Sample> {
  const kept = b.restore;
  if (!kept) throw new Error('no backup from b to restore');
  const command = kept.restoreCommand ?? '';
  const m = RESTORE_COMMAND.exec(command);
  if (!m || !command.includes(path.basename(kept.file)))
    throw new Error(`the restore_command of ${kept.id} is not "createdb NEWDB && … ${path.basename(kept.file)} … NEWDB": ${command || '(none)'}`);
  await freshDatabase(b.cluster, RESTORE_DB);
  await settle(b.cluster);
  const env = { ...libpq(b.cluster, RESTORE_DB), PATH: `${b.cluster.binDir}${path.delimiter}${process.env.PATH ?? '/usr/bin:/bin'}` };
  const script = m[1]!.replace(/\bNEWDB\b/g, RESTORE_DB);
  const run = await measure('bash', ['-o', 'pipefail', '-c', script], { env, cwd: path.dirname(kept.file) });
  await b.cluster.dropDatabase(RESTORE_DB);
  return { wallMs: run.wallMs, peakRssBytes: run.peakRssBytes, bytes: fs.statSync(kept.file).size };
}

function runOne(b: Bench, db: string, key: Key): Promise<Sample> {
  switch (key) {
    case 'a':
    case 'a0':
      return runPgDump(b, db, key);
    case 'b':
    case 'c':
    case 'd':
    case 'g':
      return runBackup(b, db, key);
    case 'e':
    case 'j0':
    case 'j2':
      return runPgRestore(b, key);
    case 'f':
    case 'h':
      return runVerify(b, db, key);
    case 'i':
    case 'r':
      return runRestore(b, db, key);
    case 'r0':
      return runRestoreCommand(b);
  }
}

interface Round {
  round: number;
  order: Key[];
  loadAtStart: number;
  s: Record<Key, Sample>;
  /** b by the --baseline build. */
  b0?: Sample;
}

/** Round r runs KEYS rotated left by r: each command takes every position in turn. */
function orderOf(round: number): Key[] {
  const k = round % KEYS.length;
  return [...KEYS.slice(k), ...KEYS.slice(0, k)];
}

async function runRound(b: Bench, db: string, round: number, baseline?: string): Promise<Round> {
  const order = orderOf(round);
  const loadAtStart = os.loadavg()[0]!;
  const s: Partial<Record<Key, Sample>> = {};
  let b0: Sample | undefined;
  for (const key of order) {
    if (key === 'b' && baseline && round % 2 === 0) b0 = await runBackup(b, db, 'b0', baseline);
    s[key] = await runOne(b, db, key);
    if (key === 'b' && baseline && round % 2 === 1) b0 = await runBackup(b, db, 'b0', baseline);
  }
  return { round, order, loadAtStart, s: s as Record<Key, Sample>, b0 };
}

// ---------------------------------------------------------------------------------------------
// The reference commands of issue 10's table (first round only)

type RefKey = 'z1' | 'zstd3' | 'zstd1' | 'dir' | 'restoreZstd';
const REF_LABEL: Record<RefKey, string> = {
  z1: 'pg_dump -Fc -Z1 -f F',
  zstd3: 'pg_dump -Fc -Z0 | zstd -3 -T2 > F',
  zstd1: 'pg_dump -Fc -Z0 | zstd -1 -T2 > F',
  dir: 'pg_dump -Fd -j2 -f DIR',
  restoreZstd: 'zstd -dc F.zst | pg_restore -d DB (the zstd -1 file)',
};

/** What issue 10 reported on its database, which the issue10 dataset reproduces: time in s, size in MB. */
const ISSUE10_REPORTED: Partial<Record<Key | RefKey, { time: string; size?: string }>> = {
  a: { time: '14.4–14.8', size: '95.3' },
  z1: { time: '6.8', size: '98.1' },
  a0: { time: '2.9–3.4', size: '382' },
  zstd1: { time: '3.5–3.8', size: '81.0' },
  e: { time: '7.0–7.8' },
  j2: { time: '5.8–6.0' },
};

interface RefSample {
  wallMs: number;
  /** Size of the file (or directory) written or restored. */
  bytes: number;
}

/** `bash -o pipefail -c SCRIPT` with `args` as $1, $2 …: the pipe fails (and measure rejects) when any of its commands does. */
function measurePipe(b: Bench, db: string, script: string, args: string[]): Promise<Measured> {
  return measure('bash', ['-o', 'pipefail', '-c', script, 'bench', ...args], { env: libpq(b.cluster, db), cwd: b.dirs.work });
}

/**
 * Times each reference command once, each after a CHECKPOINT and `sync` and with its output
 * deleted before it runs; each restore into a fresh empty database, created and dropped outside
 * the clock. The piped dumps end with `sync FILE` (pg_dump -f and basement-backup fsync theirs).
 */
async function runReferences(b: Bench, db: string): Promise<Record<RefKey, RefSample>> {
  const dir = b.dirs.reference;
  const env = libpq(b.cluster, db);
  const bin = (name: string) => path.join(b.cluster.binDir, name);
  const r: Partial<Record<RefKey, RefSample>> = {};

  emptyDir(dir);
  const z1 = path.join(dir, `${db}.Z1.dump`);
  await settle(b.cluster);
  r.z1 = { wallMs: (await measure(bin('pg_dump'), ['-Fc', '-Z1', '-f', z1], { env, cwd: b.dirs.work })).wallMs, bytes: fs.statSync(z1).size };

  const zst = path.join(dir, `${db}.dump.zst`);
  for (const level of [3, 1] as const) {
    emptyDir(dir);
    await settle(b.cluster);
    const m = await measurePipe(b, db, `"$1" -Fc -Z0 | "$2" -${level} -T2 > "$3" && sync -- "$3"`, [bin('pg_dump'), b.zstd, zst]);
    r[level === 3 ? 'zstd3' : 'zstd1'] = { wallMs: m.wallMs, bytes: fs.statSync(zst).size };
  }
  // the zstd -1 file stays for restoreZstd

  const dumpDir = path.join(dir, `${db}.dir`);
  await settle(b.cluster);
  const md = await measure(bin('pg_dump'), ['-Fd', '-j2', '-f', dumpDir], { env, cwd: b.dirs.work });
  r.dir = { wallMs: md.wallMs, bytes: filesUnder(dumpDir).reduce((n, f) => n + fs.statSync(f).size, 0) };
  fs.rmSync(dumpDir, { recursive: true, force: true });

  await freshDatabase(b.cluster, RESTORE_DB);
  await settle(b.cluster);
  const mz = await measurePipe(b, RESTORE_DB, '"$1" -dc "$2" | "$3" -d "$4"', [b.zstd, zst, bin('pg_restore'), RESTORE_DB]);
  r.restoreZstd = { wallMs: mz.wallMs, bytes: fs.statSync(zst).size };
  await b.cluster.dropDatabase(RESTORE_DB);
  emptyDir(dir);
  return r as Record<RefKey, RefSample>;
}

// ---------------------------------------------------------------------------------------------
// Report

/** Time ratios, as medians of the per-round ratios; without a target: reported only. */
const RATIOS: { name: string; num: Key; den: Key; target?: number; issue: string }[] = [
  { name: 'b/a', num: 'b', den: 'a', target: TARGET.backupRatio, issue: 'issue 10, kept by issue 19' },
  { name: 'c/a', num: 'c', den: 'a', target: TARGET.defaultBackupRatio, issue: 'issue 19' },
  { name: 'b/a0', num: 'b', den: 'a0', target: TARGET.floorRatio, issue: 'issue 10' },
  { name: 'c/b', num: 'c', den: 'b', target: TARGET.digestRatio, issue: 'issue 3' },
  { name: 'd/b', num: 'd', den: 'b', target: TARGET.s3Ratio, issue: 'issue 10' },
  // issue 4's target (≤ 1.15) was against a backup that compressed like pg_dump; d/b replaces it
  { name: 'd/a', num: 'd', den: 'a', issue: "issue 4's, replaced by d/b" },
  { name: 'i/e', num: 'i', den: 'e', target: TARGET.restoreJobsRatio, issue: 'issue 10' },
  // what no restore --jobs of a compressed backup can go below: pg_restore --jobs of an uncompressed file with offsets
  { name: 'j0/e', num: 'j0', den: 'e', issue: 'the floor of i/e: pg_restore alone, no decompression, no checks' },
  { name: 'r/r0', num: 'r', den: 'r0', target: TARGET.restoreCommandRatio, issue: 'issue 19' },
  { name: 'r/j2', num: 'r', den: 'j2', target: TARGET.restoreGoalRatio, issue: "issue 19's goal" },
  { name: 'f/e', num: 'f', den: 'e', target: TARGET.verifyRatio, issue: 'issue 10' },
  { name: 'g/b', num: 'g', den: 'b', target: TARGET.encryptRatio, issue: 'issue 9' },
];

const ratio = (r: Round, num: Key, den: Key) => r.s[num].wallMs / r.s[den].wallMs;
/** b's file / a's file in round r. */
const sizeRatio = (r: Round) => r.s.b.bytes / r.s.a.bytes;

// ---------------------------------------------------------------------------------------------

let cleanupDone = false;
let clusterRef: Cluster | undefined;
let s3Ref: S3rver | undefined;
let baseDir: string | undefined;

function cleanup(): void {
  if (cleanupDone) return;
  cleanupDone = true;
  stopCurrent();
  pitrCleanup();
  // the listening socket goes with this process in any case
  s3Ref?.close().catch(() => undefined);
  clusterRef?.stop();
  if (baseDir) fs.rmSync(baseDir, { recursive: true, force: true });
}

async function startS3(dir: string): Promise<S3> {
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: S3_BUCKET, configs: [] }] });
  s3Ref = server;
  const info = await server.run();
  return { server, endpoint: `http://127.0.0.1:${info.port}` };
}

/** An age identity for g and h, in the run's own directory (0600), and its public key. */
async function ageKey(dir: string): Promise<Bench['age']> {
  const { secret, publicKey } = await generateIdentity();
  const identityFile = path.join(dir, 'age-identity.txt');
  fs.writeFileSync(identityFile, `${secret}\n`, { mode: 0o600 });
  return { publicKey, identityFile };
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const loadAtStart = load();
  const opts = parseOptions();
  if (!fs.existsSync(cliMain)) throw new Error(`${cliMain} is missing: run \`npm run build\` (npm run bench does it first)`);
  const zstd = onPath('zstd');
  if (opts.onlyPitr) {
    await pitrBench({ runs: opts.runs, cli: cliMain });
    return;
  }

  baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-bench-'));
  const dirs: Dirs = {
    base: baseDir,
    pgDumpOut: path.join(baseDir, 'pg_dump-out'),
    pgDumpZ0Out: path.join(baseDir, 'pg_dump-Z0-out'),
    reference: path.join(baseDir, 'reference'),
    backups: {
      b: path.join(baseDir, 'backups-b'),
      b0: path.join(baseDir, 'backups-b0'),
      c: path.join(baseDir, 'backups-c'),
      d: path.join(baseDir, 'backups-d'),
      g: path.join(baseDir, 'backups-g'),
    },
    tmp: path.join(baseDir, 'tmp'),
    s3: path.join(baseDir, 's3'),
    logDir: path.join(baseDir, 'logs'),
    work: path.join(baseDir, 'work'),
    startup: path.join(baseDir, 'startup'),
  };
  for (const d of [dirs.pgDumpOut, dirs.pgDumpZ0Out, dirs.reference, ...Object.values(dirs.backups), dirs.tmp, dirs.s3, dirs.logDir, dirs.work, dirs.startup])
    fs.mkdirSync(d, { mode: 0o700 });

  say(`basement-backup benchmark: ${datasetLine(opts)}; ${opts.runs} rounds of ${KEYS.length} interleaved commands, order rotated each round`);
  for (const note of opts.notes) say(`note: ${note}`);
  for (const k of KEYS) say(`  ${k}. ${PLAIN.includes(k) ? '' : 'basement-backup '}${LABEL[k]}`);
  say('basement-backup runs with its defaults (zstd compression) except BACKUP_DIR, BACKUP_TEMP_DIR, LOG_DIR, BACKUP_MIN_FREE_MB=0,');
  say('BACKUP_RETENTION_MIN_COUNT=100000, BACKUP_DIGEST=off for b, d and g, the S3_* variables for d, BACKUP_AGE_RECIPIENTS for g');
  say('(BACKUP_AGE_IDENTITY_FILE for h). Round 1 also times the reference commands of issue 10, once; after the rounds, the start-up');
  say(`probes of issue 19 run ${STARTUP_RUNS} times each.`);
  const cluster = await startCluster();
  clusterRef = cluster;
  const s3 = await startS3(dirs.s3);
  const b: Bench = { cluster, dirs, s3, zstd, age: await ageKey(dirs.work) };
  const pgDumpVersion = spawnSync(path.join(cluster.binDir, 'pg_dump'), ['--version'], { encoding: 'utf8' }).stdout.trim();
  const zstdVersion = spawnSync(zstd, ['-V'], { encoding: 'utf8' }).stdout.trim();
  say(`cluster: ${cluster.host}:${cluster.port}, ${pgDumpVersion}, node ${process.version}, ${os.cpus().length} CPUs; s3rver at ${s3.endpoint}`);
  say(`${zstd}: ${zstdVersion}; files in ${baseDir}`);
  say(`load average (1/5/15 min) at start: ${loadAtStart}`);

  // 1. A quarter-size database, one run of b, to show the RSS is flat.
  const smallSpec = dbSpec(opts, true);
  const small = await buildDatabase(cluster, 'bench_small', smallSpec);
  say(builtLine(small, opts.dataset, sizeTarget(smallSpec)));
  const smallB = await runBackup(b, small.name, 'b');
  emptyDir(dirs.backups.b); // not for i: its database goes now
  b.restore = undefined;
  await cluster.dropDatabase(small.name);

  // 2. The full-size database, interleaved rounds.
  const bigSpec = dbSpec(opts, false);
  const big = await buildDatabase(cluster, 'bench', bigSpec);
  say(builtLine(big, opts.dataset, sizeTarget(bigSpec)));
  b.sourceRows = await countRows(cluster, big.name);
  if (opts.onlyHttp) {
    sayHttp(await httpRounds(b, big.name, opts));
    return;
  }
  await runPgDump(b, big.name); // warm-up, not measured; its file is e's until a runs
  // Other work on the machine skews every command; the load average shows whether there was any.
  const loadBefore = load();
  const tRounds = Date.now();
  const rounds: Round[] = [];
  let ref: Record<RefKey, RefSample> | undefined;
  for (let i = 0; i < opts.runs; i++) {
    const r = await runRound(b, big.name, i, opts.baseline);
    rounds.push(r);
    say(
      `  round ${i + 1}/${opts.runs} (${r.order.join(' ')}): ` +
        KEYS.map((k) => `${k} ${secs(r.s[k].wallMs)}`).join(', ') +
        (r.b0 ? `, b0 ${secs(r.b0.wallMs)}` : '') +
        ' s; ' +
        RATIOS.map((q) => `${q.name} ${ratio(r, q.num, q.den).toFixed(3)}`).join(', ') +
        `, b/a size ${sizeRatio(r).toFixed(3)}` +
        (r.b0 ? `, b0/a ${(r.b0.wallMs / r.s.a.wallMs).toFixed(3)}` : ''),
    );
    if (i === 0) {
      ref = await runReferences(b, big.name);
      const done = ref;
      say(`  reference commands (round 1 only): ${(Object.keys(REF_LABEL) as RefKey[]).map((k) => `${REF_LABEL[k]} ${secs(done[k].wallMs)} s`).join('; ')}`);
    }
  }
  const roundsMs = Date.now() - tRounds;
  const loadAfter = load();
  const tStartup = Date.now();
  const startup = await startupProbes(b, big.name);
  const startupMs = Date.now() - tStartup;
  const http = opts.httpRounds > 0 ? await httpRounds(b, big.name, opts) : undefined;
  await s3.server.close();
  s3Ref = undefined;
  if (!ref) throw new Error('the reference commands did not run');

  // Report.
  const n = rounds.length;
  const med = (k: Key, f: (s: Sample) => number) => median(rounds.map((r) => f(r.s[k])));
  say();
  say(
    `Rounds on ${big.name} (dataset ${opts.dataset}, ${mb(big.sizeBytes)} MB). Wall time in s from spawn to exit, each command preceded by CHECKPOINT + sync.`,
  );
  say(
    table(
      ['round', 'order', 'load 1m', ...KEYS.map((k) => `${k} s`), 'f: restore part s'],
      rounds.map((r) => [
        r.round + 1,
        r.order.join(' '),
        r.loadAtStart.toFixed(2),
        ...KEYS.map((k) => secs(r.s[k].wallMs)),
        r.s.f.restoreMs === undefined ? '' : secs(r.s.f.restoreMs),
      ]),
    ),
  );
  say("Ratios per round (time; b/a size: the size of b's file over a's):");
  say(
    table(
      ['round', ...RATIOS.map((q) => q.name), 'b/a size'],
      rounds.map((r) => [r.round + 1, ...RATIOS.map((q) => ratio(r, q.num, q.den).toFixed(3)), sizeRatio(r).toFixed(3)]),
    ),
  );
  say('Peak RSS of each measured process (its own VmHWM; pg_dump/pg_restore/zstd children not included), in MB:');
  say(
    table(
      ['round', ...KEYS.map((k) => `${k} RSS`)],
      rounds.map((r) => [r.round + 1, ...KEYS.map((k) => mb(r.s[k].peakRssBytes))]),
    ),
  );
  const written = ['a', 'a0', 'b', 'c', 'd', 'g'] as const;
  say('Sizes of the files written, in MB:');
  say(
    table(
      ['round', ...written.map((k) => `${k} file`)],
      rounds.map((r) => [r.round + 1, ...written.map((k) => mb(r.s[k].bytes, 2))]),
    ),
  );

  // The table of issue 10, with the project's rows.
  say();
  const issue10 = opts.dataset === 'issue10';
  say(
    `Issue 10's table on ${big.name}, dataset ${opts.dataset} (${issue10 ? "issue 10's database, reproduced" : "not issue 10's database: --dataset issue10 reproduces it"}):`,
  );
  say('the reference commands were timed once, in round 1 only (to keep the run within its time budget);');
  say(`a, a0, e, j2, j0, r0 and the project's rows are medians of the ${n} rounds. Size: of the file (or directory) written, or of the file restored.`);
  // with issue10, what issue 10 reported on its database beside each command it timed
  const reported = (k: Key | RefKey): string[] => {
    if (!issue10) return [];
    const r = ISSUE10_REPORTED[k];
    return [r === undefined ? '' : `${r.time} s${r.size === undefined ? '' : `, ${r.size} MB`}`];
  };
  const refRow = (k: RefKey) => [REF_LABEL[k], secs(ref[k].wallMs), mb(ref[k].bytes), 'round 1 only', ...reported(k)];
  const medRow = (label: string, k: Key) => [label, secs(med(k, (s) => s.wallMs)), mb(med(k, (s) => s.bytes)), `median of ${n}`, ...reported(k)];
  say(
    table(
      ['command', 'time s', 'size MB', 'measured', ...(issue10 ? ['issue 10 reported'] : [])],
      [
        medRow('pg_dump -Fc -f F (gzip 6) = a', 'a'),
        refRow('z1'),
        medRow('pg_dump -Fc -Z0 -f F = a0', 'a0'),
        refRow('zstd3'),
        refRow('zstd1'),
        refRow('dir'),
        medRow("pg_restore -d DB F (a's file) = e", 'e'),
        medRow(`pg_restore -j${RESTORE_JOBS} -d DB F (a's file) = j2`, 'j2'),
        medRow(`pg_restore -j${RESTORE_JOBS} -d DB F (a0's file) = j0`, 'j0'),
        refRow('restoreZstd'),
        medRow("zstd -dc F.zst | pg_restore -d DB (b's file: its restore_command) = r0", 'r0'),
        ...(['b', 'c', 'd', 'i', 'r', 'f', 'g', 'h'] as const).map((k) => medRow(`basement-backup ${LABEL[k]} = ${k}`, k)),
      ],
    ),
  );

  say();
  say(`Start-up (issue 19), once after the rounds: ${STARTUP_RUNS} runs of each, interleaved, on ${big.name} and b's newest backup. spawn → exit, or`);
  say('spawn → the first line in the JSON log (LOG_LEVEL=debug) that marks the first action; the last column less node -e 0:');
  say(startupTable(startup));

  const peak = (k: Key) => Math.max(...rounds.map((r) => r.s[k].peakRssBytes));
  const growth = peak('b') - smallB.peakRssBytes;
  say();
  say(`RSS against database size (dataset ${opts.dataset}; b: basement-backup backup, BACKUP_DIGEST=off, peak VmHWM of the Node process):`);
  say(
    table(
      ['database', 'pg_database_size', 'dump file', 'runs of b', 'peak RSS', 'b s'],
      [
        [small.name, mb(small.sizeBytes), mb(smallB.bytes), 1, mb(smallB.peakRssBytes), secs(smallB.wallMs)],
        [big.name, mb(big.sizeBytes), mb(med('b', (s) => s.bytes)), n, `${mb(peak('b'))} (max)`, secs(med('b', (s) => s.wallMs))],
      ],
    ),
  );

  const totalMs = Date.now() - t0;
  // the time budget is the default run's; the fixed datasets (issue10, dominant) have none
  const budgeted = opts.dataset === 'default' && opts.sizeMb === 500;
  say();
  say(`Summary (dataset ${opts.dataset}, ${n} rounds; ratios are the median of the per-round ratios, the ratio of the medians in brackets):`);
  const rows: (string | number)[][] = [];
  rows.push(['dataset', `${datasetLine(opts)}; built: ${mb(big.sizeBytes)} MB`, '', '']);
  for (const q of RATIOS) {
    const perRound = median(rounds.map((r) => ratio(r, q.num, q.den)));
    const ofMedians = med(q.num, (s) => s.wallMs) / med(q.den, (s) => s.wallMs);
    rows.push([
      `${q.name}: ${LABEL[q.num]} / ${LABEL[q.den]}`,
      `${perRound.toFixed(3)} (${ofMedians.toFixed(3)})`,
      q.target === undefined ? `none (${q.issue})` : `≤ ${q.target.toFixed(2)} (${q.issue})`,
      q.target === undefined ? '' : verdict(perRound <= q.target),
    ]);
  }
  const sizes = median(rounds.map(sizeRatio));
  rows.push([
    `b/a size: b's file / a's file (${mb(med('b', (s) => s.bytes))} / ${mb(med('a', (s) => s.bytes))} MB; a0's ${mb(med('a0', (s) => s.bytes))} MB)`,
    `${sizes.toFixed(3)} (${(med('b', (s) => s.bytes) / med('a', (s) => s.bytes)).toFixed(3)})`,
    `≤ ${TARGET.sizeRatio} (issue 10)`,
    verdict(sizes <= TARGET.sizeRatio),
  ]);
  const bManifest = rounds[n - 1]!.s.b.manifest;
  rows.push([
    "b's manifest (last round): compression; dump_size_bytes",
    `${bManifest?.compression ?? '?'}; ${bManifest?.dumpSizeBytes === undefined ? '?' : `${mb(bManifest.dumpSizeBytes)} MB`}`,
    '',
    '',
  ]);
  for (const k of ['i', 'r'] as const)
    rows.push([
      `${k}: ${COUNTED_TABLE} rows restored / in ${big.name} (checked every round)`,
      `${rounds.map((r) => r.s[k].restoredRows ?? '?').join(', ')} / ${b.sourceRows}`,
      'equal',
      verdict(rounds.every((r) => r.s[k].restoredRows === b.sourceRows)),
    ]);
  rows.push(['r: the pg_restore jobs restore chose without --jobs (per round, as it reports them)', rounds.map((r) => r.s.r.jobs ?? '?').join(', '), '', '']);
  if (opts.baseline) rows.push(baselineRow(rounds, opts.baseline));
  rows.push([
    `b peak RSS (max of ${n} runs)`,
    `${mb(peak('b'))} MB`,
    `≤ ${TARGET.backupRssMb} MB (issues 2, 10)`,
    verdict(peak('b') <= TARGET.backupRssMb * MB),
  ]);
  rows.push([
    `b peak RSS growth, ${mb(small.sizeBytes)} → ${mb(big.sizeBytes)} MB database`,
    `${growth >= 0 ? '+' : ''}${mb(growth)} MB`,
    `≤ +${RSS_GROWTH_TOLERANCE_MB} MB (issues 2, 10)`,
    verdict(growth <= RSS_GROWTH_TOLERANCE_MB * MB),
  ]);
  rows.push([`f peak RSS (max of ${n} runs)`, `${mb(peak('f'))} MB`, `≤ ${TARGET.verifyRssMb} MB (issue 10)`, verdict(peak('f') <= TARGET.verifyRssMb * MB)]);
  rows.push([`d peak RSS (max of ${n} runs)`, `${mb(peak('d'))} MB`, `≤ ${TARGET.s3RssMb} MB (issue 4)`, verdict(peak('d') <= TARGET.s3RssMb * MB)]);
  for (const k of ['g', 'h'] as const)
    rows.push([`${k} peak RSS (max of ${n} runs)`, `${mb(peak(k))} MB`, `≤ ${TARGET.encryptRssMb} MB (issue 9)`, verdict(peak(k) <= TARGET.encryptRssMb * MB)]);
  for (const k of ['c', 'i', 'r'] as const) rows.push([`${k} peak RSS (max; for reference)`, `${mb(peak(k))} MB`, '', '']);
  for (const k of KEYS) rows.push([`${k}. ${LABEL[k]}: median (min–max)`, spread(rounds.map((r) => r.s[k].wallMs)), '', '']);
  rows.push(["f's restore part, as verify reports it: median", `${secs(median(rounds.map((r) => r.s.f.restoreMs ?? 0)))} s`, '', '']);
  rows.push([
    'total benchmark time',
    `${secs(totalMs)} s (rounds ${secs(roundsMs)} s, with the references; start-up probes ${secs(startupMs)} s)`,
    `~${TIME_BUDGET_S} s with the default dataset at 500 MB`,
    budgeted ? (totalMs <= TIME_BUDGET_S * 1000 ? 'within' : 'OVER') : '',
  ]);
  say(table(['measure', 'value', 'target', 'result'], rows));
  say(
    `load average (1/5/15 min): at the start of the run ${loadAtStart}; before the measured rounds ${loadBefore}; after them ${loadAfter}; ` +
      `at the end ${load()} (${os.cpus().length} CPUs)`,
  );
  if (budgeted && totalMs > TIME_BUDGET_S * 1000) say(`note: this run took ${secs(totalMs)} s, over the ~${TIME_BUDGET_S} s budget; --runs stays at least 3.`);
  if (http) sayHttp(http);
  say(`total benchmark time ${secs(totalMs)} s`);
}

/** The HTTP server's effect on the daemon's backup (bench/http.ts). */
function httpRounds(b: Bench, db: string, opts: Options): Promise<HttpEffect> {
  say(`The HTTP server (issue 21): ${opts.httpRounds} pairs of the daemon's catch-up backup of ${db} (digest off), without and with the server`);
  say(
    `under GET requests to /metrics, /healthz and /, ${HTTP_CONCURRENCY} at a time (a flood), and the three once a second (paced), for as long as the backup runs; timed by the manifest's duration.`,
  );
  return httpEffect({ cli: cliMain, env: (dir, extra) => bbEnv(b, db, dir, extra), dir: b.dirs.base, cwd: b.dirs.work }, opts.httpRounds, say);
}

function sayHttp(h: HttpEffect): void {
  const ratio = h.ratio;
  say(
    `HTTP server's effect on a backup: under the flood with/without ${ratio.toFixed(3)} (median of ${h.rounds.length} rounds; target ≤ 1.05: ${ratio <= 1.05 ? 'within' : 'OVER'}); ` +
      `p99 latency ${Math.max(...h.rounds.map((r) => r.p99Ms)).toFixed(1)} ms (the worst round); paced (the three pages once a second) ${h.pacedRatio.toFixed(3)} (${h.pacedRatio <= 1.05 ? 'within' : 'OVER'})`,
  );
}

/** The start-up probes (bench/startup.ts) on `db` and b's newest backup. */
function startupProbes(b: Bench, db: string): ReturnType<typeof runStartup> {
  const kept = b.restore;
  if (!kept) throw new Error('no backup from b for the start-up probes');
  return runStartup({
    cli: cliMain,
    cwd: b.dirs.work,
    env: (extra, backupDir) => bbEnv(b, db, backupDir ?? path.dirname(kept.file), extra),
    backupId: kept.id,
    scratchDir: b.dirs.startup,
    restoreDb: RESTORE_DEFAULT_DB,
    settle: () => settle(b.cluster),
    dropDatabase: (name) => b.cluster.dropDatabase(name),
  });
}

/** The database built, its size and how much of it is bench_docs. */
function builtLine(db: BuiltDb, dataset: Dataset, target: string): string {
  return (
    `built ${db.name} (dataset ${dataset}): ${mb(db.sizeBytes)} MB (pg_database_size; ${target}), pgbench -s ${db.scale} + ${db.docsRows} bench_docs rows ` +
    `(${mb(db.docsBytes)} MB with its index, ${((100 * db.docsBytes) / db.sizeBytes).toFixed(0)} % of the database), in ${secs(db.buildMs)} s`
  );
}

/** b/a of this build against b0/a of the --baseline build, medians of the per-round ratios. */
function baselineRow(rounds: Round[], baseline: string): (string | number)[] {
  const ba = median(rounds.map((r) => r.s.b.wallMs / r.s.a.wallMs));
  const b0a = median(rounds.map((r) => r.b0!.wallMs / r.s.a.wallMs));
  const diff = ba - b0a;
  return [
    `b/a against b0/a (b0: ${path.relative(process.cwd(), baseline) || baseline}, the same command)`,
    `${ba.toFixed(3)} vs ${b0a.toFixed(3)} (${diff >= 0 ? '+' : ''}${diff.toFixed(3)})`,
    '≤ +0.02 (issue 8)',
    verdict(diff <= 0.02),
  ];
}

process.once('SIGINT', () => {
  process.stderr.write('\ninterrupted: cleaning up\n');
  cleanup();
  process.exit(130);
});
process.once('SIGTERM', () => {
  cleanup();
  process.exit(143);
});

main()
  .then(() => {
    cleanup();
    process.exit(0);
  })
  .catch((err: unknown) => {
    cleanup();
    process.stderr.write(`bench: ${err instanceof UsageError ? '' : 'failed: '}${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof UsageError ? 64 : 1);
  });
