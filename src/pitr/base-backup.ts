/**
 * `basebackup`: one base backup of the configured database's cluster, streamed once from
 * pg_basebackup through the pipeline to every target's point-in-time archive, and made good
 * (its record `ID.base.json` written, last) only once the WAL from its start to its stop is
 * archived there. Otherwise nothing of it stays: its data is never committed, and what a crash
 * leaves is removed by the next run.
 *
 * Stages: prepare (lock; pg_basebackup started, its output held, while the server is checked and
 * each target's archive identity and leftovers are) → stream (pg_basebackup into the fan-out)
 * → wait for the WAL → commit (data, then the record).
 */
import { putOptionsNow } from '../repository/locking';
import path from 'node:path';
import type { App, Target } from '../app';
import { describeCompression } from '../compress/compression';
import { checkRecipients } from '../crypto/age';
import { asBackupError, BackupError } from '../errors';
import { holdLock } from '../lock/file-lock';
import { log } from '../logger';
import { suffixOf } from '../pipeline/names';
import { allTargetsFailed } from '../repository/fanout';
import { compactTimestamp } from '../repository/manifest';
import type { ObjectWriter } from '../storage/types';
import { formatBytes } from '../util/format';
import { withReleasers, type Releasers } from '../util/releasers';
import { VERSION } from '../version';
import { baseManifestName, type BaseManifest } from '../wal/base-manifest';
import { rangeAround, walNeeded, type WalRange } from '../wal/base-range';
import { baseIdOf, BASE_PREFIX } from './base-listing';
import { checkArchiveIdentity, removeUnfinished } from './base-prepare';
import { BaseSession, type BaseServer } from './base-server';
import { startBase, streamBase, type StreamedBase } from './base-stream';
import { waitForWal, walMissingError } from './base-wal-wait';
import { pitrChain } from './encode';

export interface BaseBackupResult {
  manifest: BaseManifest;
  /** Targets that hold it (data and record). */
  stored: string[];
  /** Targets that do not, with why; the backup is good on the others. */
  failedTargets: { name: string; error: BackupError }[];
  /** How long pg_basebackup's stream took, and the wait for the WAL after it. */
  streamMs: number;
  walWaitMs: number;
}

/** The lock that keeps two base backups of one database from running at once (beside its backup lock). */
export function baseLockFile(app: App): string {
  const backupLock = app.lockFile(app.database.db.database);
  return path.join(path.dirname(backupLock), path.basename(backupLock).replace(/\.lock$/, '.base.lock'));
}

export function baseLockPurpose(app: App): string {
  return `base backup of ${app.database.name}`;
}

/** Takes one base backup; throws unless at least one target holds it, good, afterwards. */
export async function runBaseBackup(app: App, opts: { signal?: AbortSignal } = {}): Promise<BaseBackupResult> {
  const signal = opts.signal ?? app.signal;
  const { encryption } = app.config;
  if (encryption) await checkRecipients(encryption.recipients, encryption.variable);
  return withReleasers(async (releasers) => {
    holdLock(releasers, baseLockFile(app), baseLockPurpose(app));
    const bins = await app.binaries();
    const failed = new Map<string, BackupError>();
    const started = new Date();
    const { chain, ctx } = pitrChain(app);
    // pg_basebackup connects and the server checkpoints while the server is asked and the targets
    // are checked and opened; its output waits for them. Stopped if that fails. (Its label names
    // the second; a second base backup in that second is stored as ID_2.) Nothing of the range
    // depends on when the server is asked: the start is the backup's own (backup_label).
    const base = startBase(app, { bins, label: `basement-backup ${BASE_PREFIX}${compactTimestamp(started)}`, chain, ctx, signal });
    releasers.add(() => base.stop());
    const session = await BaseSession.open(app.database.db);
    releasers.add(() => session.close());
    const server = session.server;
    const dataBytes = session.dataBytes();
    dataBytes.catch(() => undefined);
    const targets = await prepareTargets(app, server, started, failed);
    const id = await uniqueId(targets, started);
    const file = `${id}.tar${suffixOf(chain)}`;
    const writers = await openWriters(targets, file, failed, releasers);
    log.info('base backup started', {
      database: app.database.name,
      id,
      compression: compressionOf(ctx),
      targets: [...writers.keys()].map((t) => t.name).join(','),
    });
    const streamed = await streamBase(app, base, server, writers);
    for (const [name, err] of streamed.failed) failed.set(name, err);
    const streamedAt = new Date();
    // the end as the server's clock has it, read after pg_basebackup ended: never before the real end
    const after = await session.now();
    const range = streamed.range ?? serverRange(streamed.start, after.lsn, server.segmentSize);
    log.info('base backup streamed', {
      id,
      size: formatBytes(streamed.sizeBytes),
      start_lsn: range.start_lsn,
      stop_lsn: range.stop_lsn,
      ms: streamedAt.getTime() - started.getTime(),
    });
    const needed = walNeeded(range, server.segmentSize);
    const files = [...(needed.history ? [needed.history] : []), ...needed.segments];
    const holding = [...writers.keys()].filter((t) => !failed.has(t.name));
    const wait = await waitForWal(holding, files, { timeoutMs: app.config.pitr.baseWalWaitMs, signal });
    const walWaitMs = Date.now() - streamedAt.getTime();
    if (wait.complete.length === 0) throw walMissingError(wait, walWaitMs);
    for (const [t, m] of wait.missing) failed.set(t.name, walMissingError({ complete: [], missing: new Map([[t, m]]) }, walWaitMs));
    const manifest = manifestFor(app, {
      id,
      file,
      started,
      stopped: after.now,
      server,
      streamed,
      range,
      segments: needed.segments,
      ctx,
      dataBytes: streamed.tarBytes ?? (await dataBytes),
    });
    const stored = await commitEach(wait.complete, writers, manifest, failed);
    manifest.targets = stored.map((t) => t.name);
    log.info('base backup completed', {
      id,
      file,
      size: formatBytes(manifest.size_bytes),
      stored: manifest.targets.join(','),
      failed: [...failed.keys()].join(',') || undefined,
    });
    return {
      manifest,
      stored: manifest.targets,
      failedTargets: [...failed].map(([name, error]) => ({ name, error })),
      streamMs: streamedAt.getTime() - started.getTime(),
      walWaitMs,
    };
  });
}

/** The WAL range of a primary's backup whose stream was not read whole: from its backup_label's start to the server's position after it. */
function serverRange(start: { lsn: string; timeline: number } | undefined, after: string | undefined, segmentSize: number): WalRange {
  const range = start ? rangeAround(start, after, segmentSize) : 'its WAL start was not read';
  if (typeof range === 'string') {
    throw new BackupError('BASEBACKUP_FAILED', `the base backup cannot be used: ${range}`, {
      hint: 'Nothing of it was kept. Run basebackup again; if it repeats, read the server log.',
    });
  }
  return range;
}

/** Each target's archive checked (another cluster's refuses the backup) and its leftovers removed; a target that fails otherwise is set aside. */
async function prepareTargets(app: App, server: BaseServer, at: Date, failed: Map<string, BackupError>): Promise<Target[]> {
  const outcomes = await Promise.all(
    app.targets.map(async (t) => {
      try {
        await checkArchiveIdentity(t, server, at);
        await removeUnfinished(t);
        return undefined;
      } catch (err) {
        return asBackupError(err);
      }
    }),
  );
  const refused = outcomes.find((e) => e?.code === 'WAL_REFUSED');
  if (refused) throw refused;
  const ok = app.targets.filter((t, i) => {
    if (outcomes[i]) failed.set(t.name, outcomes[i]);
    return !outcomes[i];
  });
  if (ok.length === 0) throw allTargetsFailed(failed);
  return ok;
}

/** "base_20261207T010203Z", with "_2", "_3" after it when a base backup of that second is kept already. */
async function uniqueId(targets: Target[], started: Date): Promise<string> {
  const base = `${BASE_PREFIX}${compactTimestamp(started)}`;
  const taken = new Set<string>();
  for (const t of targets) for (const o of await t.pitr().root.list(base)) taken.add(baseIdOf(o.name) ?? '');
  let id = base;
  for (let n = 2; taken.has(id); n++) id = `${base}_${n}`;
  return id;
}

async function openWriters(targets: Target[], file: string, failed: Map<string, BackupError>, releasers: Releasers): Promise<Map<Target, ObjectWriter>> {
  const writers = new Map<Target, ObjectWriter>();
  for (const t of targets) {
    try {
      // on a target with Object Lock, locked like a backup taken now: the key on this server cannot delete it
      const w = await t.pitr().root.createWriter(file, putOptionsNow(t.repo.lock, t.pitr().root.locks));
      // not committed by the end (a failure, a stop): aborted, so nothing of it is left
      releasers.add(() => w.abort());
      writers.set(t, w);
    } catch (err) {
      failed.set(t.name, asBackupError(err));
    }
  }
  if (writers.size === 0) throw allTargetsFailed(failed);
  return writers;
}

interface Parts {
  id: string;
  file: string;
  /** This machine's clock at the start (for the duration). */
  started: Date;
  /** The server's clock after pg_basebackup ended. */
  stopped: Date;
  server: BaseServer;
  streamed: StreamedBase;
  range: WalRange;
  segments: string[];
  ctx: ReturnType<typeof pitrChain>['ctx'];
  /** pg_basebackup's tar stream's size when it was read, else the databases' (pg_database_size). */
  dataBytes: number;
}

/** "zstd:1", "gzip:6", "none": how the tar stream is stored. */
function compressionOf(ctx: Parts['ctx']): string {
  return ctx.compressor ? describeCompression(ctx.compressor) : 'none';
}

function manifestFor(app: App, p: Parts): BaseManifest {
  const { streamed, server, range } = p;
  return {
    id: p.id,
    kind: 'base',
    file: p.file,
    start_time: server.now.toISOString(),
    stop_time: p.stopped.toISOString(),
    start_lsn: range.start_lsn,
    stop_lsn: range.stop_lsn,
    timeline: range.timeline,
    system_identifier: server.systemIdentifier,
    pg_version: Math.floor(server.versionNum / 10000),
    segment_size: server.segmentSize,
    wal_first: p.segments[0]!,
    wal_last: p.segments[p.segments.length - 1]!,
    size_bytes: streamed.sizeBytes,
    sha256: streamed.sha256,
    ...(streamed.plainSha256 ? { plain_sha256: streamed.plainSha256 } : {}),
    source_bytes: p.dataBytes,
    compression: compressionOf(p.ctx),
    encryption: app.config.encryption ? { format: 'age', recipients: app.config.encryption.recipients } : null,
    duration_ms: Date.now() - p.started.getTime(),
    tool_version: VERSION,
    ...(range.manifest_checksum ? { backup_manifest_checksum: range.manifest_checksum } : {}),
    database: app.database.name,
  };
}

/** The data, then its record, on each target whose WAL is complete; returns those that hold both. */
async function commitEach(targets: Target[], writers: Map<Target, ObjectWriter>, m: BaseManifest, failed: Map<string, BackupError>): Promise<Target[]> {
  const stored: Target[] = [];
  for (const t of targets) {
    try {
      await writers.get(t)!.commit();
      stored.push(t);
    } catch (err) {
      failed.set(t.name, asBackupError(err));
    }
  }
  const recorded: Target[] = [];
  const text = JSON.stringify({ ...m, targets: stored.map((t) => t.name) }, null, 2) + '\n';
  for (const t of stored) {
    try {
      await t.pitr().root.writeAtomic(baseManifestName(m.id), text, putOptionsNow(t.repo.lock, t.pitr().root.locks));
      recorded.push(t);
    } catch (err) {
      failed.set(t.name, asBackupError(err));
      // data without a record is unfinished: removed now, or by the next run
      await t
        .pitr()
        .root.delete(m.file)
        .catch(() => undefined);
    }
  }
  if (recorded.length === 0) throw allTargetsFailed(failed);
  return recorded;
}
