import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startCluster } from '../../scripts/lib/cluster';
import type { S3Backend } from './s3';

export interface PgInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  binDir: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pg: PgInfo;
  }
}

const REPO = path.resolve(__dirname, '../..');
const RADOSGW_SCRIPTS = path.join(REPO, 'scripts/radosgw');
const RADOSGW_BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'monmaptool', 'uuidgen', 'curl'];
const INSTALL = 'apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl';

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      fs.accessSync(path.join(dir, bin), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(file)} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * The S3 server of this run. TEST_S3_SERVER: `radosgw` (required: missing binaries are an
 * error; what CI sets), `s3rver` (quick, lenient), or unset: radosgw when its binaries are
 * installed, else s3rver.
 */
async function startS3Backend(): Promise<{ backend: S3Backend; stop(): Promise<void> }> {
  const wanted = process.env.TEST_S3_SERVER ?? 'auto';
  if (!['auto', 'radosgw', 's3rver'].includes(wanted)) throw new Error(`TEST_S3_SERVER=${wanted}: use radosgw, s3rver, or leave it unset`);
  const missing = RADOSGW_BINARIES.filter((b) => !onPath(b));
  if (!fs.existsSync('/usr/bin/python3')) missing.push('/usr/bin/python3');
  if (wanted === 's3rver' || (wanted === 'auto' && missing.length > 0)) {
    process.stderr.write(`S3 tests run against s3rver${wanted === 'auto' ? ` (radosgw not installed: ${INSTALL})` : ''}\n`);
    return { backend: { kind: 's3rver' }, stop: () => Promise.resolve() };
  }
  if (missing.length > 0) throw new Error(`TEST_S3_SERVER=radosgw but ${missing.join(', ')} not found; install: ${INSTALL}`);
  // a secret of this run only, so tests can check that it never shows
  const secretAccessKey = `bb-rgw-${crypto.randomBytes(12).toString('hex')}`;
  const out = await run(
    path.join(RADOSGW_SCRIPTS, 'up.sh'),
    [],
    { ...process.env, RADOSGW_ACCESS_KEY: 'bbtest', RADOSGW_SECRET_KEY: secretAccessKey },
    240_000,
  );
  const vars = Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  ) as Record<string, string>;
  process.stderr.write(`S3 tests run against radosgw at ${vars.S3_ENDPOINT}\n`);
  return {
    backend: { kind: 'radosgw', endpoint: vars.S3_ENDPOINT!, accessKeyId: vars.S3_ACCESS_KEY_ID!, secretAccessKey: vars.S3_SECRET_ACCESS_KEY! },
    stop: async () => {
      await run(path.join(RADOSGW_SCRIPTS, 'down.sh'), [vars.RADOSGW_DIR!], process.env, 60_000);
    },
  };
}

/** The newest modification time under `dir` (0 when it does not exist). */
function newestMtime(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, fs.statSync(path.join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/**
 * The integration tests run the built CLI (dist/): when any source it is built from is newer
 * than the build (`npx vitest run file` has no pretest step), build first, so no test runs
 * yesterday's code. A failing build fails the run.
 */
async function buildIfStale(): Promise<void> {
  const built = path.join(REPO, 'dist/src/cli/main.js');
  const builtAt = fs.existsSync(built) ? fs.statSync(built).mtimeMs : 0;
  const sources = ['src', 'scripts', 'bench'].map((d) => newestMtime(path.join(REPO, d)));
  const configs = ['tsconfig.json', 'tsconfig.build.json'].map((f) => fs.statSync(path.join(REPO, f)).mtimeMs);
  if (Math.max(...sources, ...configs) <= builtAt) return;
  process.stderr.write('dist/ is older than the sources: npm run build\n');
  await run('npm', ['--prefix', REPO, 'run', 'build'], { ...process.env }, 240_000);
}

/**
 * One throwaway PostgreSQL cluster for the whole run (each test creates its own database in it),
 * and one S3 server (each test creates its own bucket in it).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [cluster, s3, build] = await Promise.allSettled([startCluster(), startS3Backend(), buildIfStale()]);
  if (build.status === 'rejected') {
    if (cluster.status === 'fulfilled') cluster.value.stop();
    if (s3.status === 'fulfilled') await s3.value.stop();
    throw build.reason;
  }
  if (cluster.status === 'rejected' || s3.status === 'rejected') {
    if (cluster.status === 'fulfilled') cluster.value.stop();
    if (s3.status === 'fulfilled') await s3.value.stop();
    throw cluster.status === 'rejected' ? cluster.reason : (s3 as PromiseRejectedResult).reason;
  }
  const c = cluster.value;
  project.provide('pg', { host: c.host, port: c.port, user: c.user, password: c.password, binDir: c.binDir });
  project.provide('s3', s3.value.backend);
  return async () => {
    try {
      await s3.value.stop();
    } finally {
      c.stop();
    }
  };
}
