/**
 * The daemon's control socket (control-protocol.ts): `basebackup` run by hand hands its base
 * backup to the running daemon, which takes it as it takes its scheduled ones, its programs and
 * connections already loaded (issue 23: a base backup by hand within 1.15× pg_basebackup's time;
 * docs/pitr.md, "Speed"). The command that asked waits for the result and prints it; when it stops
 * (Ctrl-C) or goes away, the base backup is stopped and what it wrote removed, as when the command
 * runs it itself. The daemon's stop stops it too, and the command says so.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { App } from '../app';
import { asBackupError } from '../errors';
import { log } from '../logger';
import { performBaseBackup } from '../pitr/base-job';
import {
  ALIVE_MS,
  PROTOCOL_VERSION,
  configHashes,
  controlSocketPath,
  differing,
  errorToWire,
  lineReader,
  resultToWire,
  type Reply,
  type Request,
} from './control-protocol';

/** How long a connection may take to send its request. */
const REQUEST_MS = 5_000;

export interface ControlSocket {
  /** Whether a request runs now. */
  busy(): boolean;
  /** Stops listening, stops what runs and waits for it (each asker is told). */
  stop(): Promise<void>;
}

/**
 * Listens on `daemon.sock` in the state directory for `apps`. When another daemon answers there, or
 * the socket cannot be made, this daemon goes without one (logged): commands then run their work
 * themselves. Like a scheduled base backup, a base backup taken here is seen by the next of the
 * daemon's checks (BACKUP_CHECK_MINUTES), not by an extra one at its end.
 */
export async function startControlSocket(apps: App[]): Promise<ControlSocket> {
  const file = controlSocketPath(apps[0]!.config.stateDir);
  const stopping = new AbortController();
  const running = new Set<Promise<void>>();
  const none: ControlSocket = { busy: () => false, stop: () => Promise.resolve() };
  if (!file) {
    log.info('no control socket: the state directory path is too long for one; `basebackup` by hand runs in its own process');
    return none;
  }
  if (await answers(file)) {
    log.warn(`another basement-backup daemon answers at ${file} (two daemons on one BACKUP_STATE_DIR?): this one opens no control socket`);
    return none;
  }
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const r = serve(socket, apps, stopping.signal)
      .catch((err) => log.warn(`control socket: ${asBackupError(err).message}`))
      .finally(() => running.delete(r));
    running.add(r);
  });
  try {
    // a socket left by a daemon that is gone (nothing answered above)
    fs.rmSync(file, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => (server.off('error', reject), resolve()));
    });
    fs.chmodSync(file, 0o600);
  } catch (err) {
    log.warn(`no control socket at ${file}: ${(err as Error).message}; \`basebackup\` by hand runs in its own process`);
    server.close();
    return none;
  }
  server.on('error', (err) => log.warn(`control socket: ${err.message}`));
  log.info(`control socket listening at ${file}`);
  let stopped: Promise<void> | undefined;
  return {
    busy: () => running.size > 0,
    stop: () =>
      (stopped ??= (async () => {
        stopping.abort();
        await new Promise<void>((r) => server.close(() => r()));
        await Promise.allSettled([...running]);
        fs.rmSync(file, { force: true });
      })()),
  };
}

/** Whether a process accepts connections at `file` now. */
function answers(file: string): Promise<boolean> {
  if (!fs.existsSync(file)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = net.connect(file);
    const done = (v: boolean) => (clearTimeout(t), s.destroy(), resolve(v));
    const t = setTimeout(() => done(true), 2_000); // accepted by the kernel and silent: some process holds it
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** One connection: its request, then the run, told to the asker as it goes. */
async function serve(socket: net.Socket, apps: App[], stopping: AbortSignal): Promise<void> {
  const send = (m: Reply) => {
    if (!socket.destroyed && socket.writable) socket.write(JSON.stringify(m) + '\n');
  };
  const request = await readRequest(socket);
  if (!request) return void socket.destroy();
  socket.resume(); // what follows the request is not read; only its end counts
  const refuse = (why: string) => {
    log.info(`control socket: refused a ${request.run} asked for by process ${request.pid}: ${why}`);
    send({ refused: why });
    socket.end();
  };
  if (request.v !== PROTOCOL_VERSION) return refuse(`it speaks version ${request.v} of the protocol, this daemon ${PROTOCOL_VERSION}`);
  if (request.run !== 'basebackup') return refuse(`this daemon does not run "${String(request.run)}"`);
  const app = apps.find((a) => a.database.name === request.database);
  if (!app) return refuse(`this daemon does not back up ${request.database}`);
  const differs = differing(request.config ?? {}, configHashes(app.config, app.database));
  if (differs.length > 0) return refuse(`its configuration differs from this daemon's in ${differs.join(', ')}`);
  if (stopping.aborted) return refuse('this daemon is stopping');

  // the asker stops it by ending its side (Ctrl-C) or by going away; the daemon's stop stops it too
  const gone = new AbortController();
  socket.on('end', () => gone.abort());
  socket.on('close', () => gone.abort());
  socket.on('error', () => gone.abort());
  const signal = AbortSignal.any([gone.signal, stopping]);
  log.info(`base backup of ${app.database.name} asked for by \`basebackup\` (process ${request.pid})`);
  send({ accepted: true, pid: process.pid });
  const alive = setInterval(() => send({ alive: true }), ALIVE_MS);
  try {
    const result = await performBaseBackup(app, { signal });
    send({ result: resultToWire(result) });
  } catch (err) {
    const e = asBackupError(err);
    const why = gone.signal.aborted ? 'the command that asked for it stopped' : stopping.aborted ? 'the daemon is stopping' : undefined;
    send({ error: errorToWire(why && e.code === 'ABORTED' ? Object.assign(e, { message: `${e.message} (${why})` }) : e) });
  } finally {
    clearInterval(alive);
    socket.end();
  }
}

/** The first line of a connection, within REQUEST_MS; undefined when none came or it is not a request. */
function readRequest(socket: net.Socket): Promise<Request | undefined> {
  return new Promise((resolve) => {
    const done = (r: Request | undefined) => {
      clearTimeout(t);
      socket.off('data', onData);
      resolve(r);
    };
    const t = setTimeout(() => done(undefined), REQUEST_MS);
    const onData = lineReader(
      (v) => done(typeof v === 'object' && v !== null && 'run' in v ? (v as Request) : undefined),
      () => done(undefined),
    );
    socket.on('data', onData);
    socket.once('end', () => done(undefined));
    socket.once('error', () => done(undefined));
  });
}
