import { BackupError } from '../errors';
import { redact } from '../redact';

/** What the messages of a failed request name: the target, where it is, and its deadline. */
export interface S3FailureContext {
  /** The target's name. */
  name: string;
  bucket: string;
  prefix: string;
  /** The endpoint, never credentials. */
  endpointLabel: string;
  timeoutSeconds: number;
  /** The storage's signal: a request failing after it fired was cancelled. */
  signal?: AbortSignal | undefined;
}

/** The slice of an SDK error the messages read. */
export interface SdkError {
  name?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/**
 * A failed request to a bucket as a BackupError with its fix: ABORTED when the storage was
 * stopping, else STORAGE saying what went wrong (no connection, no answer, a wrong clock, refused
 * credentials, a missing bucket, data damaged on the way, parts too small or lost) and what to do.
 * `op` and `name` say what was being done: "reading" "x.dump".
 */
export function s3Failure(c: S3FailureContext, op: string, name: string, err: unknown): BackupError {
  const e = err as SdkError;
  const target = c.name;
  if (e.name === 'AbortError' || c.signal?.aborted) {
    return new BackupError('ABORTED', `${target}: ${op} ${name} was cancelled`, {
      hint: 'basement-backup was stopping; nothing partial is kept.',
      cause: err,
    });
  }
  const status = e.$metadata?.httpStatusCode;
  const endpoint = c.endpointLabel;
  const seconds = c.timeoutSeconds;
  const raise = `if it is only slow, raise the target's timeout (S3_TIMEOUT_SECONDS, or timeout_seconds in BACKUP_CONFIG_FILE; now ${seconds} s)`;
  let what = `${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`;
  let hint = `Check the ${target} target's endpoint, bucket and credentials, and that the storage is reachable.`;
  if (e.name === 'TimeoutError') {
    if (/establish a connection/.test(e.message ?? '')) {
      what = `could not connect to ${endpoint} within ${seconds} s`;
      hint = `Check the ${target} target's endpoint (host and port) and that this machine can reach it (DNS, firewall, proxy); ${raise}.`;
    } else {
      what = /download stopped/.test(e.message ?? '')
        ? `the download stopped: no data from ${endpoint} for ${seconds} s`
        : `no answer from ${endpoint} within ${seconds} s`;
      hint = `The ${target} target's endpoint accepted the connection but stopped answering: check that ${endpoint} is the provider's S3 API (not a web page, or a firewall that swallows traffic) and the provider's status page; ${raise}.`;
    }
  } else if (/object ?lock/i.test(`${e.name ?? ''} ${e.message ?? ''}`)) {
    hint = `The object is under S3 Object Lock on the ${target} target: it cannot be deleted or overwritten before its retain-until date (nor, in governance mode, without a key allowed to bypass it); prune deletes it once the lock has passed. See docs/offsite.md#object-lock.`;
  } else if (e.name === 'RequestTimeTooSkewed') {
    hint = `The ${target} target refused the request because this machine's clock is off: set the time right (NTP, e.g. timedatectl set-ntp true).`;
  } else if (status === 403 || e.name === 'AccessDenied' || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch') {
    hint = `The ${target} target refused the credentials: check its access key and secret, and that the key may read, write, list and delete under ${c.prefix || 'the bucket'}.`;
  } else if (e.name === 'NoSuchBucket') {
    hint = `Bucket ${c.bucket} does not exist at this endpoint: create it or fix the bucket name.`;
  } else if (e.name === 'BadDigest' || e.name === 'InvalidDigest') {
    hint = `The ${target} target received data that did not match its Content-MD5: it was damaged on the way (network, or a proxy that rewrites requests) and was not kept. Retry, and check what sits between this machine and ${endpoint}.`;
  } else if (e.name === 'EntityTooSmall') {
    hint = `The ${target} target rejects upload parts this small: use a part size of at least 5 MB (S3_PART_SIZE_MB, or part_size_mb in BACKUP_CONFIG_FILE).`;
  } else if (e.name === 'InvalidPart' || e.name === 'InvalidPartOrder' || e.name === 'NoSuchUpload') {
    hint = `The ${target} target does not hold the parts as they were sent (or the unfinished upload was removed meanwhile, e.g. by a lifecycle rule); the upload was aborted. Retry, and check the provider.`;
  }
  return new BackupError('STORAGE', redact(`${target}: ${op} ${name} failed: ${what}`), { hint: redact(hint), cause: err });
}
