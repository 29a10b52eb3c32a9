/**
 * The stream stage of a base backup: `pg_basebackup -D - -Ft -X none` (its WAL comes from the
 * archive), its tar stream watched on the way (its WAL range, its cluster), then once through the
 * pipeline's write side (compression, encryption) into the fan-out to every target. Nothing is
 * kept on this machine; memory is bounded by the streams' buffers.
 *
 * With zstd (the default) and pg_basebackup 15 or later, pg_basebackup compresses itself
 * (`--compress=client-zstd:level=LEVEL,workers=N`, the same zstd frame the pipeline's codec
 * writes), so only the compressed bytes pass through this process. From a primary only their
 * head is decompressed, for backup_label (the WAL start; the server's position after the backup
 * gives its stop: base-backup.ts); from a standby the whole tar is watched on a side branch that
 * the zstd program decompresses. This keeps a base backup near pg_basebackup's own speed
 * (docs/pitr.md, "Speed").
 */
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { App, Target } from '../app';
import { ZSTD_DEFAULT_LEVEL, zstdThreads } from '../compress/compression';
import type { DbConfig } from '../config/types';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import type { PgBinaries } from '../pg/binaries';
import { libpqEnv } from '../pg/libpq';
import type { Codec, EncodeContext } from '../pipeline/codecs';
import { pack } from '../pipeline/write';
import { CHECK_BRANCH, Fanout, STORED_BRANCH } from '../repository/fanout';
import type { ObjectWriter } from '../storage/types';
import { runProgram, type FilterProgram, type Program, type ProgramExit } from '../pg/program';
import { tarHeadLabel } from './base-head';
import { tarTailCheck } from './base-tail';
import { walRangeOf, type WalRange } from '../wal/base-range';
import { tarWatch, type TarFacts } from '../wal/base-tar';
import { baseBackupError, type BaseServer } from './base-server';

export interface StreamedBase {
  /** The WAL range, when the stream was read whole; otherwise (pg_basebackup compressed it, from a primary) `start`. */
  range: WalRange | undefined;
  /** Where the WAL starts, from backup_label at the stream's head, when `range` is undefined. */
  start: { lsn: string; timeline: number } | undefined;
  /** The stored object: its sha256 and size. */
  sha256: string;
  sizeBytes: number;
  /** What encryption was given (encrypted only). */
  plainSha256: string | undefined;
  /** The size of pg_basebackup's tar stream, when the stream was read. */
  tarBytes: number | undefined;
  /** Targets whose copy failed while streaming, with why. */
  failed: Map<string, BackupError>;
}

export interface StartRequest {
  bins: PgBinaries;
  /** pg_basebackup's --label (its backup_label's LABEL line). */
  label: string;
  chain: readonly Codec[];
  ctx: EncodeContext;
  signal: AbortSignal;
}

/**
 * pg_basebackup, running. Its first output waits in memory (`output`, at most `HEAD_BUFFER`
 * bytes; past that the pipe's backpressure holds pg_basebackup) until `streamBase` has the
 * targets' writers. Starting it before the server is asked and the targets are checked and
 * opened lets its connection, its checkpoint and its first megabytes overlap that work; nothing
 * reaches a target before the checks pass.
 */
export interface StartedBase {
  readonly request: StartRequest;
  readonly program: Program;
  /** Its stdout, through the bounded buffer: what `streamBase` reads. */
  readonly output: Readable;
  /** pg_basebackup compresses (client-zstd): with which zstd program the stream is read back. */
  readonly clientZstd: FilterProgram | undefined;
  readonly stderr: readonly string[];
  /** Stops it (when what follows its start fails) and waits for it to end; nothing once it has ended. */
  stop(): Promise<void>;
}

/** The zstd program and level pg_basebackup can compress with in place of the pipeline's codec, when it can. */
function clientZstd(r: StartRequest): { program: FilterProgram; level: number } | undefined {
  const c = r.ctx.compressor;
  if (r.bins.major < 15 || r.chain[0]?.name !== 'zstd' || !c || typeof c.zstd !== 'object') return undefined;
  return { program: c.zstd, level: c.level ?? ZSTD_DEFAULT_LEVEL };
}

/**
 * Where pg_basebackup's stdout goes: the stored branch, and the tar watch (on the plain stream,
 * on a decompressing side branch, or on the decompressed head only).
 */
interface Route {
  chain: readonly Codec[];
  /** Builds the stages; `tarBytes()`, `facts()` and `start` are known once the stream has ended. */
  into(sink: Writable): {
    stages: Writable[];
    checked: Promise<void>;
    tarBytes(): number | undefined;
    facts(): TarFacts | undefined;
    start: Promise<{ lsn: string; timeline: number }> | undefined;
  };
}

function routeOf(r: StartRequest, zstd: FilterProgram | undefined, server: BaseServer): Route {
  if (!zstd) {
    return {
      chain: r.chain,
      into(sink) {
        const tar = tarWatch();
        let bytes = 0;
        tar.stage.on('data', (c: Buffer) => (bytes += c.length));
        return { stages: [tar.stage, sink], checked: Promise.resolve(), tarBytes: () => bytes, facts: () => tar.facts(), start: undefined };
      },
    };
  }
  const chain = r.chain.filter((c) => c.role !== 'compression');
  // from a primary, only the head is read back (backup_label: the WAL start); the stop comes from
  // the server's position after pg_basebackup (base-backup.ts). Reading back the whole stream cost
  // 0.6 s of a 2.3 s backup on two cores (docs/pitr.md, "Speed").
  if (!server.inRecovery) {
    return {
      chain,
      into(sink) {
        const head = tarHeadLabel(zstd, r.signal);
        return { stages: [head.tap, sink], checked: Promise.resolve(), tarBytes: () => undefined, facts: () => undefined, start: head.start };
      },
    };
  }
  return {
    chain,
    into(sink) {
      const check = tarTailCheck(zstd);
      let got: { facts: TarFacts; bytes: number } | undefined;
      const checked = check.done.then((g) => void (got = g));
      const head = new Fanout([
        { name: STORED_BRANCH, stream: sink },
        { name: CHECK_BRANCH, stream: check.stream, optional: true },
      ]);
      const none: TarFacts = { label: undefined, manifestTail: undefined, systemIdentifier: undefined, members: 0, ended: false };
      return { stages: [head], checked, tarBytes: () => got?.bytes ?? 0, facts: () => got?.facts ?? none, start: undefined };
    },
  };
}

/**
 * How much of pg_basebackup's output may wait in memory while the server is asked and the
 * targets are checked and opened (0.2–0.3 s): more than it sends in that time (1–2.4 MB
 * measured here, most of it spent on its checkpoint), with room for a faster server or an
 * uncompressed tar.
 */
const HEAD_BUFFER = 32 * 1024 * 1024;

/**
 * `source`, read at once into a buffer of about `bytes` (past that, backpressure holds it). An
 * error of `source` destroys what is returned with it, so whoever reads it sees the error instead
 * of waiting for an end that never comes; destroying what is returned destroys `source`.
 */
export function buffered(source: Readable, bytes: number): Readable {
  const output = new PassThrough({ readableHighWaterMark: bytes / 2, writableHighWaterMark: bytes / 2 });
  // the error reaches the reader through `output`; here it is only settled
  pipeline(source, output).catch(() => undefined);
  return output;
}

/** Starts pg_basebackup; `streamBase` then reads it into the targets. */
export function startBase(app: App, r: StartRequest): StartedBase {
  const db = app.database.db;
  const z = clientZstd(r);
  // zstd's threads (`workers`) as the pipeline's zstd program has them
  const workers = zstdThreads();
  const compress = z ? [`--compress=client-zstd:level=${z.level}${workers > 1 ? `,workers=${workers}` : ''}`] : [];
  const stderr: string[] = [];
  const program = runProgram({
    name: 'pg_basebackup',
    file: r.bins.path('pg_basebackup'),
    args: ['-D', '-', '-Ft', '-X', 'none', '--checkpoint=fast', '-v', '--no-password', `--label=${r.label}`, ...compress],
    env: libpqEnv(db, r.bins.env, db.database, `basement-backup pg_basebackup ${process.pid}`),
    signal: r.signal,
    stall: { ms: app.config.stallMs },
    onStderr: (line) => {
      if (stderr.length < 200) stderr.push(line);
      log.debug(line);
    },
  });
  // read at once into a bounded buffer, so pg_basebackup does not wait for this process's checks
  // (the stall watch counts its bytes from the start); the buffer is dropped if they fail
  const output = buffered(program.stdout, HEAD_BUFFER);
  return {
    request: r,
    program,
    output,
    clientZstd: z?.program,
    stderr,
    async stop() {
      program.stop();
      await program.exited;
    },
  };
}

/** Reads a started pg_basebackup of `server` into the targets' writers (which the caller commits or aborts). */
export async function streamBase(app: App, base: StartedBase, server: BaseServer, writers: Map<Target, ObjectWriter>): Promise<StreamedBase> {
  const db = app.database.db;
  const { request: r, program } = base;
  const route = routeOf(r, base.clientZstd, server);
  const fan = new Fanout([...writers].map(([t, w]) => ({ name: t.name, stream: w.stream })));
  const sink = await pack(route.chain, r.ctx, fan);
  const stages = route.into(sink.input);
  let streamError: unknown;
  try {
    await pipeline([base.output, ...stages.stages]);
    await sink.done;
  } catch (err) {
    streamError = err;
    program.stop();
  }
  const checkError = await stages.checked.then(
    () => undefined,
    (err: unknown) => err,
  );
  const exit = await program.exited;
  // what stopped the stream comes first: a target that failed (a full disk, S3 refusing) makes
  // this process stop pg_basebackup, whose exit then says nothing of why (its last line may be
  // "checkpoint completed")
  if (streamError) throw stoppedError(exit, r) ?? asBackupError(streamError);
  failedProgram(program, exit, r, db, server);
  const facts = stages.facts();
  const range = facts ? checkedRange(facts, base.stderr, server, checkError) : undefined;
  const start = stages.start ? await stages.start : undefined;
  const stored = sink.stored();
  return {
    range,
    start,
    sha256: stored.sha256,
    sizeBytes: stored.size,
    plainSha256: sink.plainSha256(),
    tarBytes: stages.tarBytes(),
    failed: new Map(fan.failures),
  };
}

/** Why pg_basebackup was stopped, when it was: it stalled, or the command was asked to stop. */
function stoppedError(exit: ProgramExit, r: StartRequest): BackupError | undefined {
  if (exit.stalled) return exit.stalled;
  if (r.signal.aborted) return new BackupError('ABORTED', 'the base backup was stopped before it finished', { hint: 'Nothing of it was kept.' });
  return undefined;
}

/** Throws what stopped pg_basebackup, if it did not end well. */
function failedProgram(program: Program, exit: ProgramExit, r: StartRequest, db: DbConfig, server: BaseServer): void {
  const stopped = stoppedError(exit, r);
  if (stopped) throw stopped;
  if (exit.error) {
    throw new BackupError('BASEBACKUP_FAILED', `cannot run ${r.bins.path('pg_basebackup')}: ${exit.error.message}`, {
      hint: 'Install the PostgreSQL client programs (Debian: apt-get install postgresql-client), or point PG_BIN_DIR at their directory.',
    });
  }
  if (exit.code !== 0) {
    const line = program.withoutName(program.firstError() ?? `it exited with ${exit.signal ?? exit.code}`);
    throw baseBackupError(line, server, db, program.tail.join('\n'));
  }
}

/** The WAL range the stream showed, checked: a whole tar, of this cluster. */
function checkedRange(facts: TarFacts, stderr: readonly string[], server: BaseServer, checkError: unknown): WalRange {
  if (!facts.ended) {
    const why = checkError ? `: ${asBackupError(checkError).message}` : ` (${facts.members} members, no end-of-archive blocks)`;
    throw new BackupError('BASEBACKUP_FAILED', `pg_basebackup's tar stream could not be read to its end${why}`, {
      hint: 'Nothing of it was kept. Run basebackup again; if it repeats, read the server log.',
    });
  }
  const range = walRangeOf(facts, stderr);
  if (typeof range === 'string') {
    throw new BackupError('BASEBACKUP_FAILED', `the base backup cannot be used: ${range}`, {
      hint: 'Nothing of it was kept. basement-backup needs pg_basebackup 13 or later with its backup manifest (the default).',
    });
  }
  if (facts.systemIdentifier && facts.systemIdentifier !== server.systemIdentifier) {
    throw new BackupError('BASEBACKUP_FAILED', `the backup's pg_control is of database system ${facts.systemIdentifier}, not ${server.systemIdentifier}`, {
      hint: 'DB_HOST/DB_PORT lead to another server than pg_basebackup reached (a proxy or pooler in between?): point them at the server itself.',
    });
  }
  return range;
}
