/**
 * `basebackup` by hand, handed to the running daemon over its control socket
 * (daemon/control-protocol.ts): the daemon takes it with its programs and connections already
 * loaded, this process waits and prints the result. Without a daemon (none runs, it runs with
 * another configuration, it is busy stopping, it does not answer) the command takes the base
 * backup itself, as before; so a daemon never stands between an operator and a base backup.
 */
import net from 'node:net';
import type { Command } from 'commander';
import { forDatabase, loadConfig } from '../config';
import type { Configuration, DatabaseEntry } from '../config/types';
import { BackupError } from '../errors';
import type { BaseBackupResult } from '../pitr/base-backup';
import type { GlobalOpts } from './options';
import {
  ALIVE_MS,
  PROTOCOL_VERSION,
  configHashes,
  controlSocketPath,
  errorFromWire,
  lineReader,
  resultFromWire,
  type Reply,
  type Request,
} from '../daemon/control-protocol';

/** How long the daemon has to accept or refuse. */
const ANSWER_MS = 5_000;
/** Silence (no `alive`) after which the daemon is taken for hung. */
const SILENT_MS = 6 * ALIVE_MS;

export interface HandedOff {
  /** The daemon that took it. */
  daemonPid: number;
  result: BaseBackupResult;
}

/** No daemon took it: why, when one was asked (logged once the command has its logger). */
export interface NotHanded {
  why: string | undefined;
  warn?: boolean;
}

/**
 * Asks the daemon to take a base backup of the database `cmd` names, with the configuration `cmd`
 * reads (loaded here without the rest of `setup`: the daemon checks its directories, and a
 * configuration that cannot load fails here as it would there). NotHanded when no daemon took it
 * (the caller takes it itself); otherwise the result, or the daemon's error thrown. `stop` (Ctrl-C)
 * stops it in the daemon, which removes what it wrote and answers ABORTED.
 */
export async function baseBackupByDaemon(cmd: Command, stop: AbortSignal): Promise<HandedOff | NotHanded> {
  const { envFile, db } = cmd.optsWithGlobals<GlobalOpts>();
  const { config } = loadConfig(envFile, undefined, undefined, { checkSchedules: false });
  return askDaemon(config, forDatabase(config, db), stop);
}

async function askDaemon(config: Configuration, database: DatabaseEntry, stop: AbortSignal): Promise<HandedOff | NotHanded> {
  const file = controlSocketPath(config.stateDir);
  if (!file) return { why: undefined };
  const socket = await connect(file);
  if (!socket) return { why: undefined };
  const request: Request = { v: PROTOCOL_VERSION, run: 'basebackup', database: database.name, pid: process.pid, config: configHashes(config, database) };
  socket.write(JSON.stringify(request) + '\n');
  return new Promise<HandedOff | NotHanded>((resolve, reject) => {
    let daemonPid: number | undefined;
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
      socket.destroy();
      f();
    };
    // before the answer: the daemon does not answer (hung, or not ours); after: it went silent
    let timer = setTimeout(() => finish(() => resolve({ why: `the daemon did not answer on ${file} within ${ANSWER_MS / 1000} s`, warn: true })), ANSWER_MS);
    const silent = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new BackupError('BASEBACKUP_FAILED', `the daemon (pid ${daemonPid}) taking the base backup has said nothing for ${SILENT_MS / 1000} s`, {
                hint: 'It may hang: `pm2 logs basement-backup` shows what it does; `pm2 restart basement-backup` stops it (what it wrote is removed), then run `basement-backup basebackup` again.',
              }),
            ),
          ),
        SILENT_MS,
      );
    };
    const onStop = () => socket.end(); // the daemon stops the base backup and answers ABORTED
    const onReply = (m: Reply) => {
      if ('refused' in m) {
        finish(() => resolve({ why: m.refused }));
      } else if ('accepted' in m) {
        // nothing is logged here: the daemon logs the run (and loading the logger would take CPU from pg_basebackup)
        daemonPid = m.pid;
        if (stop.aborted) onStop();
        else stop.addEventListener('abort', onStop, { once: true });
        silent();
      } else if ('alive' in m) {
        silent();
      } else if ('result' in m) {
        const pid = daemonPid!;
        finish(() => resolve({ daemonPid: pid, result: resultFromWire(m.result) }));
      } else if ('error' in m) {
        finish(() => reject(errorFromWire(m.error)));
      }
    };
    socket.on(
      'data',
      lineReader(
        (v) => onReply(v as Reply),
        (line) => finish(() => reject(new BackupError('INTERNAL', `the daemon's control socket said something unexpected: ${line}`))),
      ),
    );
    socket.on('error', () => undefined); // its close says it
    socket.on('close', () => {
      if (daemonPid === undefined) return finish(() => resolve({ why: 'the daemon closed its control socket without an answer' }));
      finish(() =>
        reject(
          new BackupError('ABORTED', `the daemon (pid ${daemonPid}) ended while it took the base backup`, {
            hint: 'pm2 restarted or stopped it, or it crashed (`pm2 logs basement-backup` says which). What it wrote is removed at the next base backup; run `basement-backup basebackup` again.',
          }),
        ),
      );
    });
  });
}

/** A connection to the daemon's socket, or undefined when nothing listens there (within a second). */
function connect(file: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(file);
    const t = setTimeout(() => (socket.destroy(), resolve(undefined)), 1_000);
    socket.once('connect', () => (clearTimeout(t), resolve(socket)));
    socket.once('error', () => (clearTimeout(t), resolve(undefined)));
  });
}
