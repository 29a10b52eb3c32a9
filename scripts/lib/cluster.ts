/**
 * A throwaway PostgreSQL cluster for the demo, the tests and the benchmark: initdb into a temp
 * directory, a random port on 127.0.0.1, its own socket directory, password (scram) login.
 * As root, the server binaries run as the `postgres` user.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface Cluster {
  host: string;
  port: number;
  user: string;
  password: string;
  binDir: string;
  dataDir: string;
  baseDir: string;
  /** Runs `sql` in `database` and returns the rows. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<T[]>;
  createDatabase(name: string): Promise<void>;
  dropDatabase(name: string): Promise<void>;
  stop(): void;
}

export function findServerBinDir(): string {
  const fromEnv = process.env.PG_BIN_DIR;
  if (fromEnv && fs.existsSync(path.join(fromEnv, 'initdb'))) return fromEnv;
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs
        .readdirSync(root)
        .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length > 0) return path.join(root, versions[0]!, 'bin');
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return path.dirname(which.stdout.trim());
  throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql (Debian: apt-get install postgresql-15) or set PG_BIN_DIR');
}

/** A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const isRoot = process.getuid?.() === 0;

function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

function run(cmd: string, args: string[]): void {
  const [c, a] = asPostgres(cmd, args);
  execFileSync(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function startCluster(opts: { binDir?: string; settings?: Record<string, string> } = {}): Promise<Cluster> {
  const binDir = opts.binDir ?? findServerBinDir();
  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-pg-'));
  fs.chmodSync(baseDir, 0o755);
  const dataDir = path.join(baseDir, 'data');
  const socketDir = path.join(baseDir, 'socket');
  const pwFile = path.join(baseDir, 'pw');
  const password = crypto.randomBytes(12).toString('hex');
  fs.mkdirSync(socketDir, { mode: 0o755 });
  fs.writeFileSync(pwFile, password + '\n', { mode: 0o600 });
  if (isRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    fs.chownSync(socketDir, uid, gid);
    fs.chownSync(pwFile, uid, gid);
    fs.mkdirSync(dataDir, { mode: 0o700 });
    fs.chownSync(dataDir, uid, gid);
  }
  run(path.join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8', '--locale=C', '--no-sync']);
  fs.rmSync(pwFile);

  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: socketDir,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '100',
    shared_buffers: '128MB',
    ...opts.settings,
  };
  fs.appendFileSync(
    path.join(dataDir, 'postgresql.conf'),
    '\n' +
      Object.entries(settings)
        .map(([k, v]) => `${k} = '${v}'`)
        .join('\n') +
      '\n',
  );
  const logFile = path.join(socketDir, 'server.log');
  let port = 0;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    port = await freePort();
    try {
      run(path.join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-o', `-p ${port}`, '-w', '-t', '60', 'start']);
      lastError = undefined;
      break;
    } catch (err) {
      lastError = err;
    }
  }
  if (lastError) {
    const logText = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
    throw new Error(`could not start PostgreSQL: ${(lastError as Error).message}\n${logText}`);
  }

  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    const [c, a] = asPostgres(path.join(binDir, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
    spawnSync(c, a, { stdio: 'ignore' });
    fs.rmSync(baseDir, { recursive: true, force: true });
  };
  process.once('exit', stop);

  const cluster: Cluster = {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password,
    binDir,
    dataDir,
    baseDir,
    async query<T extends pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<T[]> {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database });
      await client.connect();
      try {
        return (await client.query<T>(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
    async createDatabase(name) {
      await cluster.query('postgres', `CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    },
    async dropDatabase(name) {
      await cluster.query('postgres', `DROP DATABASE IF EXISTS "${name.replace(/"/g, '""')}" WITH (FORCE)`);
    },
    stop,
  };
  return cluster;
}
