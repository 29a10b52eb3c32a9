import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../errors';
import { registerSecret } from '../../redact';
import type { ObjectLockMode, RetentionRules, TargetConfig } from '../types';
import { parseRetention } from './retention';

/** The default deadline of S3 requests, in seconds. */
export const DEFAULT_S3_TIMEOUT_SECONDS = 30;
export const MAX_S3_TIMEOUT_SECONDS = 3600;

export function normalizePrefix(prefix: string): string {
  const p = prefix.replace(/^\/+/, '');
  return p === '' || p.endsWith('/') ? p : `${p}/`;
}

/** The fix for a wrong object lock setting. */
export const OBJECT_LOCK_HINT =
  'Use compliance (nobody, not even the bucket owner, can delete a backup before its time) or governance (a key with s3:BypassGovernanceRetention can: not a protection against a stolen owner key); see docs/offsite.md#object-lock.';

/** The settings of an S3 target besides name, type and retention. */
const S3_KEYS = [
  'endpoint',
  'region',
  'bucket',
  'prefix',
  'access_key_id',
  'secret_access_key',
  'force_path_style',
  'part_size_mb',
  'timeout_seconds',
  'object_lock',
  'delete',
];

const NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/i;
const MIN_PART_MB = 5;

type Raw = Record<string, unknown>;

/**
 * Reads the storage targets from BACKUP_CONFIG_FILE (JSON, or YAML by extension), e.g.
 *
 *   targets:
 *     - { name: local, type: local, path: /home/deploy/backups, retention: { days: 7, min_count: 7 } }
 *     - name: spaces
 *       type: s3
 *       endpoint: https://fra1.digitaloceanspaces.com
 *       region: fra1
 *       bucket: my-backups
 *       prefix: basement/
 *       access_key_id: ${SPACES_KEY}
 *       secret_access_key: ${SPACES_SECRET}
 *       retention: { days: 90, min_count: 7, monthly: 12 }
 *
 * `${VAR}` takes a value from the environment (or env files), so secrets can stay out of the file.
 * Every problem names the file, the entry and the field.
 */
export function readTargetsFile(file: string, vars: Record<string, string | undefined>, defaults: RetentionRules, cwd: string): ConfigFile {
  const where = 'BACKUP_CONFIG_FILE';
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      where,
      `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      'Check the path and that this user can read it.',
    );
  }
  let doc: unknown;
  try {
    // yaml is loaded only for a YAML file: every start reads the configuration.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    doc = /\.ya?ml$/i.test(file) ? (require('yaml') as typeof import('yaml')).parse(text) : JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      where,
      // V8 quotes the text around a JSON error, which may be a secret: leave that quote out
      `${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(err as Error).message.split('\n')[0]!.replace(/,? *(\.\.\.)?".*"(\.\.\.)? is not valid JSON$/, '')}`,
      'Fix the syntax; a .yml/.yaml file is read as YAML, anything else as JSON.',
    );
  }
  const top = doc && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Raw) : undefined;
  const hasDatabases = top?.databases !== undefined;
  if (!top || (!Array.isArray(top.targets) && !(hasDatabases && top.targets === undefined))) {
    throw new ConfigError(where, `${file} has no "targets" list`, 'Write { "targets": [ { "name": …, "type": "local" | "s3", … } ] }.');
  }
  const unknownTop = Object.keys(top).filter((k) => k !== 'targets' && k !== 'databases');
  if (unknownTop.length > 0)
    throw new ConfigError(where, `${file}: unknown setting "${unknownTop[0]}"`, 'Only "targets" and "databases" are read from this file.');
  if (hasDatabases && (!Array.isArray(top.databases) || top.databases.length === 0)) {
    throw new ConfigError(
      where,
      `${file}: "databases" is not a list of databases`,
      'Write "databases": [ { "name": "app", "database": "app_db", … } ], or leave it out for the DB_* settings.',
    );
  }
  const databases = hasDatabases ? (top.databases as unknown[]) : undefined;
  if (top.targets === undefined) return { targets: undefined, databases };
  const targets = (top.targets as unknown[]).map((t, i) => parseTarget(t, `${file} targets[${i}]`, vars, defaults, cwd));
  if (targets.length === 0) throw new ConfigError(where, `${file} lists no targets`, 'List at least one target.');
  const seen = new Set<string>();
  for (const t of targets) {
    if (seen.has(t.name)) throw new ConfigError(where, `${file}: two targets are named "${t.name}"`, 'Give every target its own name.');
    seen.add(t.name);
  }
  return { targets, databases };
}

/** What BACKUP_CONFIG_FILE holds: targets (undefined: the environment's), and the raw `databases` list when there is one. */
export interface ConfigFile {
  targets: TargetConfig[] | undefined;
  databases: unknown[] | undefined;
}

/** `${VAR}` in a value of the file, from the environment or env files. */
export function substitute(value: string, vars: Record<string, string | undefined>, fail: (name: string) => never): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => vars[name] ?? fail(name));
}

function parseTarget(raw: unknown, at: string, vars: Record<string, string | undefined>, defaults: RetentionRules, cwd: string): TargetConfig {
  const fail = (msg: string, hint: string): never => {
    throw new ConfigError('BACKUP_CONFIG_FILE', `${at}: ${msg}`, hint);
  };
  if (!raw || typeof raw !== 'object') fail('is not an object', 'Each target is an object with name, type and its settings.');
  const t = raw as Raw;
  const str = (key: string, required: boolean, secret = false): string | undefined => {
    const v = t[key];
    if (v === undefined || v === null || v === '') {
      if (required) fail(`"${key}" is required`, `Add "${key}" to this target.`);
      return undefined;
    }
    if (typeof v !== 'string' && typeof v !== 'number') fail(`"${key}" must be a string`, `Write "${key}" as a string.`);
    const s = substitute(typeof v === 'number' ? v.toString() : (v as string), vars, (name) =>
      fail(`"${key}" refers to \${${name}}, which is not set`, `Set ${name} in the environment or an env file.`),
    );
    if (secret) registerSecret(s);
    return s;
  };
  const bool = (key: string, def: boolean): boolean => {
    const v = t[key];
    if (v === undefined) return def;
    if (typeof v !== 'boolean') fail(`"${key}" must be true or false`, `Write "${key}": true or false.`);
    return v as boolean;
  };
  const name = str('name', true)!;
  if (!NAME.test(name)) fail(`name "${name}" is not a short name`, 'Use letters, digits, - and _ (up to 32), e.g. "local" or "spaces-fra1".');
  const type = str('type', true)!;
  if (type !== 'local' && type !== 's3') fail(`type "${type}" is not local or s3`, 'Use "type": "local" or "type": "s3".');
  const retention = parseRetention(t.retention, `${at}.retention`, defaults);
  const common = ['name', 'type', 'retention'];
  const allowed = type === 'local' ? [...common, 'path'] : [...common, ...S3_KEYS];
  const unknown = Object.keys(t).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) fail(`unknown setting "${unknown[0]}"`, `Settings of a ${type} target: ${allowed.join(', ')}.`);
  if (type === 'local') return { name, type, path: path.resolve(cwd, str('path', true)!), setting: `BACKUP_CONFIG_FILE target "${name}" path`, retention };
  const partMb = t.part_size_mb === undefined ? 8 : Number(t.part_size_mb);
  if (!Number.isInteger(partMb) || partMb < MIN_PART_MB || partMb > 5000)
    fail(`part_size_mb ${JSON.stringify(t.part_size_mb)} is not a whole number from ${MIN_PART_MB} to 5000`, 'S3 parts are at least 5 MB; 8 to 64 is usual.');
  const timeout = t.timeout_seconds === undefined ? DEFAULT_S3_TIMEOUT_SECONDS : t.timeout_seconds;
  if (!Number.isInteger(timeout) || (timeout as number) < 1 || (timeout as number) > MAX_S3_TIMEOUT_SECONDS)
    fail(
      `timeout_seconds ${JSON.stringify(t.timeout_seconds)} is not a whole number from 1 to ${MAX_S3_TIMEOUT_SECONDS}`,
      `How long an S3 request may go without an answer or progress; default ${DEFAULT_S3_TIMEOUT_SECONDS}.`,
    );
  const endpoint = str('endpoint', false);
  if (endpoint && !/^https?:\/\//.test(endpoint)) fail(`endpoint "${endpoint}" is not an http(s) URL`, 'e.g. https://fra1.digitaloceanspaces.com');
  const lock = str('object_lock', false)?.toLowerCase();
  if (lock !== undefined && lock !== 'compliance' && lock !== 'governance') fail(`object_lock "${lock}" is not compliance or governance`, OBJECT_LOCK_HINT);
  return {
    name,
    type: 's3',
    endpoint,
    region: str('region', false) ?? 'us-east-1',
    bucket: str('bucket', true)!,
    prefix: normalizePrefix(str('prefix', false) ?? ''),
    accessKeyId: str('access_key_id', true, true)!,
    secretAccessKey: str('secret_access_key', true, true)!,
    forcePathStyle: bool('force_path_style', false),
    partSizeBytes: partMb * 1024 * 1024,
    timeoutSeconds: timeout as number,
    retention,
    objectLock: lock === undefined ? undefined : { mode: lock as ObjectLockMode },
    ...(bool('delete', true) ? {} : { appendOnly: true }),
  };
}
