import type { App, Target } from '../app';
import type { S3TargetConfig } from '../config/types';
import { asBackupError } from '../errors';
import { lifecycleFor } from '../retention/lifecycle';
import type { LifecycleRule } from '../storage/s3-api';
import type { BucketSettings } from '../storage/types';
import { CANARY } from './lock-canary';

/** One row of `config check`. */
export interface ProtectionRow {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  hint?: string | undefined;
}

const DOCS = 'docs/offsite.md#append-only-keys';
const CANARY_TEXT = 'basement-backup: the canary of `config check`, which tries to delete it\n';

/** The S3 targets that claim to be immutable (object_lock, or delete: false), with their configuration. */
function immutableTargets(app: App): { t: Target; cfg: S3TargetConfig; bucket: BucketSettings }[] {
  return app.targets.flatMap((t) => {
    const cfg = app.database.targets.find((c) => c.name === t.name);
    const bucket = t.repo.storage.bucket;
    if (cfg?.type !== 's3' || !bucket || (!cfg.objectLock && !cfg.appendOnly)) return [];
    return [{ t, cfg, bucket }];
  });
}

/**
 * `config check` on every target that claims to be immutable (issue 22, point 4): versioning is
 * on (PASS/FAIL); with `delete: false`, the bucket has a lifecycle rule that expires what
 * retention would (PASS/WARN), and this key cannot delete: a plain delete of the canary object
 * (the Object Lock canary's name, written when missing) must be refused (PASS/FAIL).
 */
export async function protectionChecks(app: App): Promise<ProtectionRow[]> {
  const rows: ProtectionRow[] = [];
  for (const { t, cfg, bucket } of immutableTargets(app)) {
    rows.push(await row(`target ${t.name} versioning`, () => versioningRow(cfg, bucket)));
    if (!cfg.appendOnly) continue;
    rows.push(await row(`target ${t.name} lifecycle`, () => lifecycleRow(cfg, bucket)));
    rows.push(await row(`target ${t.name} delete rights`, () => deleteRow(t, bucket)));
  }
  return rows;
}

/** The lifecycle configuration each `delete: false` target needs, as JSON for PutBucketLifecycleConfiguration, with what it cannot express. */
export function lifecycleAdvice(app: App): string[] {
  return immutableTargets(app)
    .filter(({ cfg }) => cfg.appendOnly)
    .map(({ cfg }) => {
      const { configuration, limits } = lifecycleFor(cfg.name, cfg.prefix, cfg.retention);
      return [
        `The ${cfg.name} target does not delete (delete: false): its retention is this lifecycle rule. Apply it with a key allowed to (not the server's):`,
        `  aws s3api put-bucket-lifecycle-configuration --bucket ${cfg.bucket} --lifecycle-configuration file://lifecycle.json`,
        'lifecycle.json:',
        JSON.stringify(configuration, null, 2),
        'What a lifecycle rule cannot do that retention does:',
        ...limits.map((l) => `- ${l}`),
        `See ${DOCS}.`,
      ].join('\n');
    });
}

async function row(check: string, fn: () => Promise<Omit<ProtectionRow, 'check'>>): Promise<ProtectionRow> {
  try {
    return { check, ...(await fn()) };
  } catch (err) {
    const e = asBackupError(err);
    return { check, status: 'fail', detail: e.message, hint: e.hint };
  }
}

async function versioningRow(cfg: S3TargetConfig, bucket: BucketSettings): Promise<Omit<ProtectionRow, 'check'>> {
  const v = await bucket.versioning();
  if (v === 'enabled') return { status: 'ok', detail: `bucket ${cfg.bucket} keeps versions: an object overwritten or deleted keeps its earlier version` };
  if (v === 'unknown')
    return {
      status: 'warn',
      detail: `this key may not read the versioning of bucket ${cfg.bucket}`,
      hint: `Allow it s3:GetBucketVersioning (read only), or check in the provider's console that versioning is on; see ${DOCS}.`,
    };
  return {
    status: 'fail',
    detail: `bucket ${cfg.bucket} does not keep versions (${v}): a key that can write can overwrite a backup, and nothing brings it back`,
    hint: `Switch versioning on with the owner's key: aws s3api put-bucket-versioning --bucket ${cfg.bucket} --versioning-configuration Status=Enabled (MinIO: mc version enable; B2 keeps versions unless its lifecycle says otherwise); see ${DOCS}.`,
  };
}

async function lifecycleRow(cfg: S3TargetConfig, bucket: BucketSettings): Promise<Omit<ProtectionRow, 'check'>> {
  const { days } = lifecycleFor(cfg.name, cfg.prefix, cfg.retention);
  const fix = `Apply the lifecycle rule printed below (expire after ${days} days) with the owner's key; see ${DOCS}.`;
  const rules = await bucket.lifecycle();
  if (rules === 'unknown')
    return {
      status: 'warn',
      detail: `this key may not read the lifecycle configuration of bucket ${cfg.bucket}`,
      hint: `Allow it s3:GetLifecycleConfiguration (read only), or check in the provider's console. ${fix}`,
    };
  if (rules === 'none')
    return { status: 'warn', detail: `bucket ${cfg.bucket} has no lifecycle configuration: nothing expires this target's backups, they pile up`, hint: fix };
  const applying = rules.filter((r) => r.Status === 'Enabled' && cfg.prefix.startsWith(prefixOf(r)) && r.Expiration?.Days !== undefined);
  if (applying.length === 0)
    return { status: 'warn', detail: `no enabled lifecycle rule of bucket ${cfg.bucket} expires objects under "${cfg.prefix}" by age`, hint: fix };
  const first = applying.reduce((a, b) => (a.Expiration!.Days! <= b.Expiration!.Days! ? a : b));
  const what = `rule "${first.ID ?? '?'}" expires objects under "${prefixOf(first)}" after ${first.Expiration!.Days} days`;
  if (first.Expiration!.Days! < days) return { status: 'warn', detail: `${what}: before retention lets them go (${days} days)`, hint: fix };
  return { status: 'ok', detail: `${what} (retention needs at least ${days})` };
}

function prefixOf(r: LifecycleRule): string {
  return r.Filter?.Prefix ?? r.Filter?.And?.Prefix ?? r.Prefix ?? '';
}

/** A plain DeleteObject of the canary must be refused; the canary is written first when it is not there (a delete that went through removed it). */
async function deleteRow(t: Target, bucket: BucketSettings): Promise<Omit<ProtectionRow, 'check'>> {
  const storage = t.repo.storage;
  if ((await storage.stat(CANARY)) === undefined) {
    const lock = t.repo.lock ? { lock: { mode: t.repo.lock.mode, until: new Date(Math.ceil((Date.now() + 86400_000) / 1000) * 1000) } } : {};
    await storage.writeAtomic(CANARY, CANARY_TEXT, lock);
  }
  if ((await bucket.tryDelete(CANARY)) === 'refused') return { status: 'ok', detail: `this key cannot delete (tried on ${CANARY}: AccessDenied)` };
  return {
    status: 'fail',
    detail: `this key deleted ${CANARY}: a stolen server can delete every backup of this target`,
    hint: `Give this target a key without s3:DeleteObject (and s3:DeleteObjectVersion); see ${DOCS} for AWS, Backblaze B2, Ceph and MinIO.`,
  };
}
