/**
 * The stream stage of a base backup: `pg_basebackup -D - -Ft -X none` (its WAL comes from the
 * archive), its tar stream watched (its WAL range, its cluster) and hashed on the way, then once
 * through the pipeline's write side (compression, encryption) into the fan-out to every target.
 * Nothing is kept on this machine; memory is bounded by the streams' buffers.
 */
import { pipeline } from 'node:stream/promises';
import type { App, Target } from '../app';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import type { PgBinaries } from '../pg/binaries';
import { libpqEnv } from '../pg/connection';
import { runProgram } from '../pg/program';
import type { Codec, EncodeContext } from '../pipeline/codecs';
import { pack } from '../pipeline/write';
import { Fanout } from '../repository/fanout';
import type { ObjectWriter } from '../storage/types';
import { hashTap } from '../util/streams';
import { walRangeOf, type WalRange } from '../wal/base-range';
import { tarWatch } from '../wal/base-tar';
import { baseBackupError, type BaseServer } from './base-server';

export interface StreamedBase {
  range: WalRange;
  /** The stored object: its sha256 and size. */
  sha256: string;
  sizeBytes: number;
  /** What encryption was given (encrypted only). */
  plainSha256: string | undefined;
  /** pg_basebackup's tar stream: its size and sha256. */
  tarBytes: number;
  tarSha256: string;
  /** Targets whose copy failed while streaming, with why. */
  failed: Map<string, BackupError>;
}

export interface StreamRequest {
  bins: PgBinaries;
  server: BaseServer;
  id: string;
  writers: Map<Target, ObjectWriter>;
  chain: readonly Codec[];
  ctx: EncodeContext;
  signal: AbortSignal;
}

/** Runs pg_basebackup into the targets' writers (which the caller commits or aborts). */
export async function streamBase(app: App, r: StreamRequest): Promise<StreamedBase> {
  const db = app.database.db;
  const fan = new Fanout([...r.writers].map(([t, w]) => ({ name: t.name, stream: w.stream })));
  const sink = await pack(r.chain, r.ctx, fan);
  const tar = tarWatch();
  const hash = hashTap();
  const stderr: string[] = [];
  const program = runProgram({
    name: 'pg_basebackup',
    file: r.bins.path('pg_basebackup'),
    args: ['-D', '-', '-Ft', '-X', 'none', '--checkpoint=fast', '-v', '--no-password', `--label=basement-backup ${r.id}`],
    env: libpqEnv(db, r.bins.env, db.database, `basement-backup pg_basebackup ${process.pid}`),
    signal: r.signal,
    stall: { ms: app.config.stallMs },
    onStderr: (line) => {
      if (stderr.length < 200) stderr.push(line);
      log.debug(line);
    },
  });
  let streamError: unknown;
  try {
    await pipeline(program.stdout, tar.stage, hash.stage, sink.input);
    await sink.done;
  } catch (err) {
    streamError = err;
    program.stop();
  }
  const exit = await program.exited;
  if (exit.stalled) throw exit.stalled;
  if (r.signal.aborted) throw new BackupError('ABORTED', 'the base backup was stopped before it finished', { hint: 'Nothing of it was kept.' });
  if (exit.error) {
    throw new BackupError('BASEBACKUP_FAILED', `cannot run ${r.bins.path('pg_basebackup')}: ${exit.error.message}`, {
      hint: 'Install the PostgreSQL client programs (Debian: apt-get install postgresql-client), or point PG_BIN_DIR at their directory.',
    });
  }
  if (exit.code !== 0) {
    const line = program.withoutName(program.firstError() ?? `it exited with ${exit.signal ?? exit.code}`);
    throw baseBackupError(line, r.server, db, program.tail.join('\n'));
  }
  if (streamError) throw asBackupError(streamError);
  const facts = tar.facts();
  if (!facts.ended) {
    throw new BackupError('BASEBACKUP_FAILED', `pg_basebackup's tar stream ended early (${facts.members} members, no end-of-archive blocks)`, {
      hint: 'Nothing of it was kept. Run basebackup again; if it repeats, read the server log.',
    });
  }
  const range = walRangeOf(facts, stderr);
  if (typeof range === 'string') {
    throw new BackupError('BASEBACKUP_FAILED', `the base backup cannot be used: ${range}`, {
      hint: 'Nothing of it was kept. basement-backup needs pg_basebackup 13 or later with its backup manifest (the default).',
    });
  }
  if (facts.systemIdentifier && facts.systemIdentifier !== r.server.systemIdentifier) {
    throw new BackupError('BASEBACKUP_FAILED', `the backup's pg_control is of database system ${facts.systemIdentifier}, not ${r.server.systemIdentifier}`, {
      hint: 'DB_HOST/DB_PORT lead to another server than pg_basebackup reached (a proxy or pooler in between?): point them at the server itself.',
    });
  }
  const stored = sink.stored();
  const tarDigest = hash.result();
  return {
    range,
    sha256: stored.sha256,
    sizeBytes: stored.size,
    plainSha256: sink.plainSha256(),
    tarBytes: tarDigest.size,
    tarSha256: tarDigest.sha256,
    failed: new Map(fan.failures),
  };
}
