/**
 * In-process use cases: the App the CLI would build from an environment, for tests that need a
 * backup or a listing to work on rather than the command line. A CLI launch costs a node
 * start-up; the tests of the commands themselves (output, exit codes, pm2) run the CLI.
 */
import os from 'node:os';
import { createApp, type App } from '../../src/app';
import { performBackup } from '../../src/backup/job';
import { listRows, type ListOptions } from '../../src/backup/listing';
import { loadConfig } from '../../src/config';
import { initLogger } from '../../src/logger';
import type { Manifest } from '../../src/repository/manifest';

/** The App `basement-backup` would build from this environment (and BACKUP_ENV_FILE), run in runCli's cwd. */
export function appFor(env: Record<string, string>): App {
  const { config } = loadConfig([], { ...env }, os.tmpdir());
  return createApp(config, config.databases[0]!);
}

/**
 * What `list --json [args]` prints, read through the same use case (listRows) the command calls;
 * backup-roundtrip.test.ts checks that the two agree. `args`: `--target <name>`, `--all`.
 */
export async function listJson<T = Record<string, unknown>>(env: Record<string, string>, args: string[] = []): Promise<T[]> {
  const opts: ListOptions = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--all') opts.all = true;
    else if (args[i] === '--target' && i + 1 < args.length) opts.target = args[++i];
    else throw new Error(`listJson: ${args[i]} is not read in-process; run the CLI for it`);
  }
  return JSON.parse(JSON.stringify(await listRows(appFor(env), opts))) as T[];
}

/**
 * `basement-backup backup [--label]` through the use case the command calls (performBackup):
 * the same lock, stages, checks, retention, state and alerts, logging to LOG_DIR as the command
 * does (the console only shows errors). Returns the new backup's manifest.
 */
export async function takeBackup(env: Record<string, string>, opts: { label?: string } = {}): Promise<Manifest> {
  const app = appFor(env);
  const c = app.config;
  initLogger({ dir: c.logDir, level: c.logLevel, maxBytes: c.logMaxBytes, maxFiles: c.logMaxFiles, consoleLevel: 'error' });
  return (await performBackup(app, { trigger: 'manual', label: opts.label, keepUntil: null })).manifest;
}
