import path from 'node:path';
import type { ConfigError } from '../../errors';
import { registerSecret } from '../../redact';
import type { Reader } from '../reader';
import type { ObjectLockSetting, RetentionRules, TargetConfig } from '../types';
import { DEFAULT_S3_TIMEOUT_SECONDS, MAX_S3_TIMEOUT_SECONDS, normalizePrefix, OBJECT_LOCK_HINT, readTargetsFile, type ConfigFile } from './targets-file';

/**
 * Storage targets: from BACKUP_CONFIG_FILE when set, else local (BACKUP_DIR, unless
 * BACKUP_LOCAL=false) plus one S3 target when S3_BUCKET is set.
 */
export function parseTargets(
  r: Reader,
  vars: Record<string, string | undefined>,
  backupDir: string,
  retention: RetentionRules,
  cwd: string,
): { targets: TargetConfig[]; databases: unknown[] | undefined } {
  const read = targetsOf(r, vars, backupDir, retention, cwd);
  return { targets: withTestLock(r, read.targets), databases: read.databases };
}

/**
 * BACKUP_TEST_LOCK_SECONDS (tests only): the locked targets' locks last this many seconds. A
 * server's lock passes on the server's clock, which a test cannot fake, and retention counts
 * whole days; without it a test could not see a lock pass.
 */
function withTestLock(r: Reader, targets: TargetConfig[]): TargetConfig[] {
  if (r.raw('BACKUP_TEST_LOCK_SECONDS') === undefined) return targets;
  const testSeconds = r.int('BACKUP_TEST_LOCK_SECONDS', 0, 1, 86400, 'For tests only: unset it.');
  return targets.map((t) => (t.type === 's3' && t.objectLock ? { ...t, objectLock: { ...t.objectLock, testSeconds } } : t));
}

function targetsOf(
  r: Reader,
  vars: Record<string, string | undefined>,
  backupDir: string,
  retention: RetentionRules,
  cwd: string,
): { targets: TargetConfig[]; databases: unknown[] | undefined } {
  const file = r.raw('BACKUP_CONFIG_FILE');
  if (!file) return { targets: environmentTargets(r, backupDir, retention), databases: undefined };
  let read: ConfigFile;
  try {
    read = readTargetsFile(path.resolve(cwd, file), vars, retention, cwd);
  } catch (err) {
    r.errors.push(err as ConfigError);
    return { targets: [], databases: undefined };
  }
  // a file with only `databases:` keeps the environment's targets
  if (!read.targets) return { targets: environmentTargets(r, backupDir, retention), databases: read.databases };
  const both = S3_VARS.find((v) => r.raw(v));
  if (both) r.fail(both, 'is set and so is BACKUP_CONFIG_FILE', 'Describe every target in BACKUP_CONFIG_FILE, or use the S3_* variables without it: not both.');
  return { targets: read.targets, databases: read.databases };
}

const S3_VARS = [
  'S3_BUCKET',
  'S3_ENDPOINT',
  'S3_ACCESS_KEY_ID',
  'S3_SECRET_ACCESS_KEY',
  'S3_PREFIX',
  'S3_REGION',
  'S3_FORCE_PATH_STYLE',
  'S3_PART_SIZE_MB',
  'S3_TIMEOUT_SECONDS',
  'S3_RETENTION_DAYS',
  'S3_RETENTION_MIN_COUNT',
  'S3_OBJECT_LOCK',
  'S3_DELETE',
];

/** local (BACKUP_DIR, unless BACKUP_LOCAL=false) plus one S3 target when S3_BUCKET is set. */
function environmentTargets(r: Reader, backupDir: string, retention: RetentionRules): TargetConfig[] {
  const targets: TargetConfig[] = [];
  if (r.bool('BACKUP_LOCAL', true)) targets.push({ name: 'local', type: 'local', path: backupDir, setting: 'BACKUP_DIR', retention });
  const bucket = r.raw('S3_BUCKET');
  if (!bucket) {
    const stray = S3_VARS.find((v) => v !== 'S3_BUCKET' && r.raw(v));
    if (stray) r.fail('S3_BUCKET', `is not set but ${stray} is`, 'Set S3_BUCKET to the bucket for off-site copies, or remove the S3_* variables.');
  } else {
    const accessKeyId = r.raw('S3_ACCESS_KEY_ID');
    const secretAccessKey = r.raw('S3_SECRET_ACCESS_KEY');
    registerSecret(accessKeyId);
    registerSecret(secretAccessKey);
    if (!accessKeyId) r.fail('S3_ACCESS_KEY_ID', 'is not set but S3_BUCKET is', "Set the bucket's access key id (and S3_SECRET_ACCESS_KEY).");
    if (!secretAccessKey) r.fail('S3_SECRET_ACCESS_KEY', 'is not set but S3_BUCKET is', "Set the bucket's secret access key.");
    const endpoint = r.raw('S3_ENDPOINT');
    if (endpoint && !/^https?:\/\/[^\s/]+/.test(endpoint))
      r.fail('S3_ENDPOINT', `"${endpoint}" is not an http(s) URL`, 'e.g. https://fra1.digitaloceanspaces.com, or leave it unset for AWS.');
    targets.push({
      name: 's3',
      type: 's3',
      endpoint,
      region: r.string('S3_REGION', 'us-east-1'),
      bucket,
      prefix: normalizePrefix(r.string('S3_PREFIX', '')),
      accessKeyId: accessKeyId ?? '',
      secretAccessKey: secretAccessKey ?? '',
      forcePathStyle: r.bool('S3_FORCE_PATH_STYLE', false),
      partSizeBytes: r.int('S3_PART_SIZE_MB', 8, 5, 5000, 'Set S3_PART_SIZE_MB to a part size from 5 to 5000 (MB).') * 1024 * 1024,
      timeoutSeconds: r.int(
        'S3_TIMEOUT_SECONDS',
        DEFAULT_S3_TIMEOUT_SECONDS,
        1,
        MAX_S3_TIMEOUT_SECONDS,
        `Set S3_TIMEOUT_SECONDS to how long an S3 request may go without an answer or progress (1 to ${MAX_S3_TIMEOUT_SECONDS}; default ${DEFAULT_S3_TIMEOUT_SECONDS}).`,
      ),
      retention: {
        ...retention,
        days: r.int('S3_RETENTION_DAYS', retention.days, 1, 36500),
        minCount: r.int('S3_RETENTION_MIN_COUNT', retention.minCount, 1, 100000),
      },
      objectLock: objectLockVar(r),
      ...(r.bool('S3_DELETE', true) ? {} : { appendOnly: true }),
    });
  }
  return noTargets(r, targets);
}

/** S3_OBJECT_LOCK: compliance, governance, or unset (none). */
function objectLockVar(r: Reader): ObjectLockSetting | undefined {
  const v = r.raw('S3_OBJECT_LOCK');
  if (v === undefined || v === '' || v.toLowerCase() === 'off') return undefined;
  const mode = v.toLowerCase();
  if (mode !== 'compliance' && mode !== 'governance') {
    r.fail('S3_OBJECT_LOCK', `"${v}" is not compliance or governance`, OBJECT_LOCK_HINT);
    return undefined;
  }
  return { mode };
}

function noTargets(r: Reader, targets: TargetConfig[]): TargetConfig[] {
  if (targets.length === 0 && r.errors.length === 0) {
    r.fail(
      'BACKUP_LOCAL',
      'is false and no other storage target is configured',
      'Set S3_BUCKET (and the S3_* settings) or BACKUP_CONFIG_FILE, or keep local backups.',
    );
  }
  return targets;
}
