/**
 * What the off-site tests share: S3 buckets behind a proxy the test can cut, the CLI with a check
 * that no S3 secret shows in its output, manifests on both sides, and a database big enough for
 * several upload parts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, onTestFinished } from 'vitest';
import type { SyncCopy } from '../../src/backup/sync';
import type { Manifest } from '../../src/repository/manifest';
import { DUMP, listJson, runCli, type CliResult } from './cli';
import { createTestDb, dropDb, query } from './pg';
import { testBucket, type TestBucket } from './s3';

/** A secret for targets that never authenticate (down, or refusing the key): it must never show either. */
export const SECRET = 'offsite-SeCrEt-4f9d2c7a1e';
/** Every secret in play in this test: none may appear in any output. */
const SECRETS = new Set([SECRET]);
export const MB = 1024 * 1024;

export interface Listed extends Manifest {
  state: string;
}

export function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Runs the CLI and checks that the S3 secret appears in none of its output. */
export async function cli(args: string[], env: Record<string, string>, expectCode: number | null = 0): Promise<CliResult> {
  const r = await runCli(args, env);
  if (expectCode !== null) expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expectCode);
  for (const secret of SECRETS) expect(r.stdout + r.stderr).not.toContain(secret);
  return r;
}

/** `list --json` on a target (default: the first), newest first. */
export async function listOn(env: Record<string, string>, target?: string): Promise<Listed[]> {
  return listJson<Listed>(env, target ? ['--target', target] : []);
}

export async function syncJson(env: Record<string, string>): Promise<SyncCopy[]> {
  const r = await cli(['sync', '--json'], env);
  return JSON.parse(r.stdout) as SyncCopy[];
}

export interface Bucket extends TestBucket {
  /** S3_* variables for a target under `prefix`. */
  env(prefix: string): Record<string, string>;
  /** The server goes down (as a provider outage would): connections refused; its data stays. */
  stop(): Promise<void>;
  /** It is back, on the same endpoint, with the same data. */
  restart(): Promise<void>;
}

/**
 * A fresh bucket of this run's S3 server (radosgw, or s3rver: test/helpers/s3.ts) behind a proxy
 * the test can cut, removed when the test finishes. Its secret joins the ones that must never show.
 */
export async function bucket(opts: { objectLock?: boolean; versioned?: boolean } = {}): Promise<Bucket> {
  const b = await testBucket(opts);
  SECRETS.add(b.secretAccessKey);
  onTestFinished(() => void SECRETS.delete(b.secretAccessKey));
  return Object.assign(b, { stop: () => b.proxy.cut(), restart: () => b.proxy.restore() });
}

export function localManifest(dir: string, id: string): Manifest {
  return JSON.parse(fs.readFileSync(path.join(dir, 'backups', `${id}.manifest.json`), 'utf8')) as Manifest;
}

export async function s3Manifest(s3: Bucket, prefix: string, id: string): Promise<Manifest> {
  return JSON.parse((await s3.get(`${prefix}${id}.manifest.json`)).toString('utf8')) as Manifest;
}

/** The objects of backup `id`: its data (`data`: the suffix, by default a default backup's), manifest and roles. */
export function backupKeys(prefix: string, id: string, data = DUMP): string[] {
  return [`${prefix}${id}${data}`, `${prefix}${id}.manifest.json`, `${prefix}${id}.roles.sql`].sort();
}

/**
 * A database of about 30 MB uncompressed, for the tests that need several upload parts: created
 * once before the calling file's tests and dropped after them. Returns the name, set in beforeAll.
 */
export function bigDbForThisFile(): () => string {
  let bigDb: string | undefined;
  beforeAll(async () => {
    bigDb = await createTestDb('offsite_big', { keep: true });
    await query(bigDb, `CREATE TABLE blobs AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS a FROM generate_series(1, 420000) g`);
    await query(bigDb, `CREATE TABLE notes (id int PRIMARY KEY, note text); INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 1000) g`);
  });
  afterAll(async () => {
    if (bigDb) await dropDb(bigDb);
  });
  return () => bigDb!;
}
