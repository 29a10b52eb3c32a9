/**
 * The start-up table (issue 19: "a command loads only what it needs"), timed once per run after
 * the rounds, on the full-size database and b's newest backup: in STARTUP_RUNS rounds (the order
 * rotated by one each round, each probe after a CHECKPOINT and `sync`), Node's own floor
 * (`node -e 0`), the commands that only start, read and print (`--version`, `--help`, `list
 * --json`, `status --json`, `restore ID --dry-run`, `config check`: spawn to exit), and the time
 * from spawn to the first action of `restore` and `backup`.
 *
 * The first action is read from the JSON log (LOG_DIR, a fresh one per run, LOG_LEVEL=debug): the
 * `timestamp` (milliseconds, the child's wall clock) of the first line that marks it, less
 * Date.now() taken just before the spawn (the same clock). restore: "restoring" (the backup found,
 * the server connected, the plan made and the new database created; next come the decompressed
 * copy, when restore runs pg_restore with jobs, and pg_restore) and the first line pg_restore
 * prints, at debug (it has started and connected); backup: "backup started" (the configuration
 * read, the targets listed, the server connected and checked, the snapshot exported; pg_dump
 * starts next). Both commands run to the end (afterwards, outside the measure, the restored
 * database is dropped and the backup removed); a run whose marker is missing is counted as such.
 */
import fs from 'node:fs';
import path from 'node:path';
import { measure } from './measure';
import { median, table } from './report';

export const STARTUP_RUNS = 5;
/** basement-backup's JSON-lines log in LOG_DIR (src/logger.ts). */
const JSON_LOG = 'basement-backup.jsonl';

/** What the start-up probes need of the benchmark. */
export interface StartupBench {
  /** The built basement-backup command (its shebang runs Node with basement-backup's flags). */
  cli: string;
  cwd: string;
  /** basement-backup's environment with b's backups in BACKUP_DIR, or `backupDir`, and `extra` on top. */
  env(extra: Record<string, string>, backupDir?: string): NodeJS.ProcessEnv;
  /** b's newest backup, for restore and restore --dry-run. */
  backupId: string;
  /** Where the probes' backups go (emptied after each) and their fresh log directories are made. */
  scratchDir: string;
  /** The new database restore creates (dropped after each, outside the measure). */
  restoreDb: string;
  settle(): Promise<void>;
  dropDatabase(name: string): Promise<void>;
}

type Row = 'node' | 'version' | 'help' | 'list' | 'status' | 'dryRun' | 'configCheck' | 'restoring' | 'pgRestore' | 'backupStarted';

const ROWS: Record<Row, { command: string; timed: string }> = {
  node: { command: 'node -e 0 (Node itself)', timed: 'spawn → exit' },
  version: { command: 'basement-backup --version', timed: 'spawn → exit' },
  help: { command: 'basement-backup --help', timed: 'spawn → exit' },
  list: { command: 'basement-backup list --json', timed: 'spawn → exit' },
  status: { command: 'basement-backup status --json', timed: 'spawn → exit' },
  dryRun: { command: "basement-backup restore ID --dry-run (b's backup)", timed: 'spawn → exit' },
  configCheck: { command: 'basement-backup config check', timed: 'spawn → exit' },
  restoring: { command: 'basement-backup restore ID --yes --target-db NAME', timed: 'spawn → "restoring" logged' },
  pgRestore: { command: '  the same run', timed: "spawn → pg_restore's first line logged" },
  backupStarted: { command: 'basement-backup backup (defaults)', timed: 'spawn → "backup started" logged' },
};

/** A probe: one run of one command, giving the time of one or more rows (undefined: its marker is missing). */
type Probe = (b: StartupBench, logDir: string) => Promise<Partial<Record<Row, number>>>;

/** ms from spawn to the first line of `logDir`'s JSON log whose message passes `marks`. */
function loggedAfter(logDir: string, startedAt: number, marks: (message: string) => boolean): number | undefined {
  const file = path.join(logDir, JSON_LOG);
  if (!fs.existsSync(file)) return undefined;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const entry = JSON.parse(line) as { message?: string; timestamp?: string };
    if (entry.message !== undefined && entry.timestamp !== undefined && marks(entry.message)) return Date.parse(entry.timestamp) - startedAt;
  }
  return undefined;
}

/** Times `args` from spawn to exit (measure rejects on a non-zero exit). */
function untilExit(row: Row, args: (b: StartupBench) => string[]): Probe {
  return async (b, logDir) => {
    const m = await measure(b.cli, args(b), { env: b.env({ LOG_DIR: logDir }), cwd: b.cwd });
    return { [row]: m.wallMs };
  };
}

const PROBES: Probe[] = [
  async (b) => ({ node: (await measure(process.execPath, ['-e', '0'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: b.cwd })).wallMs }),
  untilExit('version', () => ['--version']),
  untilExit('help', () => ['--help']),
  untilExit('list', () => ['list', '--json']),
  untilExit('status', () => ['status', '--json']),
  untilExit('dryRun', (b) => ['restore', b.backupId, '--dry-run']),
  untilExit('configCheck', () => ['config', 'check']),
  async (b, logDir) => {
    await b.dropDatabase(b.restoreDb);
    const args = ['restore', b.backupId, '--yes', '--target-db', b.restoreDb];
    const m = await measure(b.cli, args, { env: b.env({ LOG_DIR: logDir, LOG_LEVEL: 'debug' }), cwd: b.cwd });
    await b.dropDatabase(b.restoreDb);
    return {
      restoring: loggedAfter(logDir, m.startedAt, (msg) => msg === 'restoring'),
      pgRestore: loggedAfter(logDir, m.startedAt, (msg) => msg.startsWith('pg_restore:')),
    };
  },
  async (b, logDir) => {
    const dir = path.join(b.scratchDir, 'backups');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const m = await measure(b.cli, ['backup', '--label', 'bench start-up'], { env: b.env({ LOG_DIR: logDir, LOG_LEVEL: 'debug' }, dir), cwd: b.cwd });
    fs.rmSync(dir, { recursive: true, force: true });
    return { backupStarted: loggedAfter(logDir, m.startedAt, (msg) => msg === 'backup started') };
  },
];

/** Every probe STARTUP_RUNS times, interleaved, the order rotated by one each round: each row's samples in ms. */
export async function runStartup(b: StartupBench): Promise<Record<Row, (number | undefined)[]>> {
  const samples = Object.fromEntries(Object.keys(ROWS).map((k) => [k, []])) as unknown as Record<Row, (number | undefined)[]>;
  let n = 0;
  for (let round = 0; round < STARTUP_RUNS; round++) {
    const k = round % PROBES.length;
    for (const probe of [...PROBES.slice(k), ...PROBES.slice(0, k)]) {
      const logDir = path.join(b.scratchDir, `logs-${++n}`);
      await b.settle();
      const got = await probe(b, logDir);
      for (const [row, ms] of Object.entries(got) as [Row, number | undefined][]) samples[row].push(ms);
      fs.rmSync(logDir, { recursive: true, force: true });
    }
  }
  return samples;
}

/** The start-up table: median and min of each row, and the median less Node's own (`node -e 0`). */
export function startupTable(samples: Record<Row, (number | undefined)[]>): string {
  const ms = (x: number) => x.toFixed(0);
  const floor = median(samples.node.filter((x) => x !== undefined));
  const rows = (Object.keys(ROWS) as Row[]).map((row) => {
    const got = samples[row].filter((x) => x !== undefined);
    const { command, timed } = ROWS[row];
    const missing = samples[row].length - got.length;
    const note = missing === 0 ? `${got.length}` : `${got.length} (${missing} without the line)`;
    if (got.length === 0) return [command, timed, 'n/a', 'n/a', 'n/a', note];
    const med = median(got);
    return [command, timed, ms(med), ms(Math.min(...got)), row === 'node' ? '' : ms(med - floor), note];
  });
  return table(['command', 'timed', 'median ms', 'min ms', 'median − node -e 0, ms', 'runs'], rows);
}
