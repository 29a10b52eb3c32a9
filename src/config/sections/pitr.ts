import type { PitrConfig } from '../types';
import type { Reader } from '../reader';

/** WAL_PUSH_TIMEOUT_SECONDS, WAL_REQUIRED_TARGETS (checked against the targets where they are known) and BASEBACKUP_WAL_WAIT_SECONDS. */
export function parsePitr(r: Reader): PitrConfig {
  const required = r.raw('WAL_REQUIRED_TARGETS');
  const names =
    required === undefined || required.trim().toLowerCase() === 'all'
      ? undefined
      : required
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  return {
    pushTimeoutMs:
      r.int(
        'WAL_PUSH_TIMEOUT_SECONDS',
        60,
        1,
        3600,
        'Set WAL_PUSH_TIMEOUT_SECONDS to how long one wal-push may take before it fails (PostgreSQL retries it), e.g. 60.',
      ) * 1000,
    requiredTargets: names && names.length > 0 ? names : undefined,
    baseWalWaitMs:
      r.int(
        'BASEBACKUP_WAL_WAIT_SECONDS',
        300,
        1,
        86_400,
        'Set BASEBACKUP_WAL_WAIT_SECONDS to how long a base backup may wait for its WAL to reach the archive (wal-receive or archive_command), e.g. 300.',
      ) * 1000,
  };
}
