/**
 * The daemon's WAL receivers (WAL_RECEIVE=on): one per PostgreSQL server, not per database entry,
 * since WAL belongs to the whole cluster; it archives under the first entry of that server
 * (pitr/NAME/). Started with the daemon, stopped in its shutdown before the process exits. A
 * receiver that keeps failing alerts once per failure streak; it restarts by itself. Beside each,
 * base backups on BASEBACKUP_SCHEDULE (./base-backups.ts).
 */
import type { App } from '../app';
import { BackupError } from '../errors';
import { log } from '../logger';
import { WalReceiver } from '../pitr/receive';
import type { WalGap } from '../pitr/wal-gap';
import { scheduleBaseBackups, type BaseBackups } from './base-backups';
import { schedulePitrDrills, type StartedWith } from './pitr-drills';

/** pg_receivewal runs failed in a row before the alert (a server restart costs one or two). */
const ALERT_AFTER_STREAM_FAILURES = 3;
/** Pushes failed without one success between them before the alert. */
const ALERT_AFTER_PUSH_FAILURES = 5;
/** How long a receiver that could not start (its spool locked by a wal-receive) waits before it tries again. */
const START_RETRY_MS = 60_000;

/** One receiver per server among `apps` (the first entry of each); none unless WAL_RECEIVE=on. */
export function receiverApps(apps: App[]): App[] {
  if (!apps[0]?.config.pitr.receive) return [];
  const byServer = new Map<string, App>();
  for (const app of apps) {
    const key = `${app.database.db.host}:${app.database.db.port}`;
    const first = byServer.get(key);
    if (first) log.info(`WAL of ${app.database.name}'s server is archived under ${first.database.name} (one WAL receiver per server)`);
    else byServer.set(key, app);
  }
  return [...byServer.values()];
}

/** Runs one receiver until stopped: alerts once per failure streak, tries again when it could not start. */
function supervise(app: App, stopping: AbortSignal, bases: BaseBackups): { receiver: WalReceiver; running: Promise<void> } {
  let alerted = false;
  let pushFailures = 0;
  const alert = (err: BackupError, why: string) => {
    if (alerted) return;
    alerted = true;
    void app.alerter.send({ kind: 'problem', what: `WAL archiving of ${app.database.name} is failing (${why})`, error: err });
  };
  const receiver = new WalReceiver(app, {
    onFailure(err, inARow) {
      log.warn(`WAL receiver of ${app.database.name}: ${err.message}`, { hint: err.hint });
      if (inARow >= ALERT_AFTER_STREAM_FAILURES) alert(err, `pg_receivewal failed ${inARow} times in a row`);
      if (inARow === 0 && ++pushFailures >= ALERT_AFTER_PUSH_FAILURES) alert(err, `${pushFailures} pushes failed; the files wait in the spool`);
    },
    onRecovered: () => (alerted = pushFailures >= ALERT_AFTER_PUSH_FAILURES),
    onGap: (gap) => gapFound(app, gap, bases),
    onArchived() {
      pushFailures = 0;
      alerted = receiver.state().failuresInARow >= ALERT_AFTER_STREAM_FAILURES;
    },
  });
  const running = (async () => {
    while (!stopping.aborted) {
      try {
        await (
          await receiver.start()
        ).done;
        return;
      } catch (err) {
        const e = err as BackupError;
        log.error(`the WAL receiver of ${app.database.name} cannot start: ${e.message}`, { hint: e.hint });
        alert(e, 'it cannot start');
        await new Promise<void>((r) => {
          const t = setTimeout(r, START_RETRY_MS);
          stopping.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
        });
      }
    }
  })();
  return { receiver, running };
}

/** The server removed WAL before it was archived: an alert, and a base backup now (recovery cannot cross the gap). */
function gapFound(app: App, gap: WalGap, bases: BaseBackups): void {
  const taking = bases.now(app);
  void app.alerter.send({
    kind: 'problem',
    what: `WAL archiving of ${app.database.name} has a gap: the server removed WAL from ${gap.from} before it was archived`,
    error: new BackupError(
      'WAL_ARCHIVING',
      `the server no longer had WAL ${gap.from} when the receiver asked for it; streaming started again at ${gap.resumeLsn}`,
      {
        hint: `Point-in-time recovery reaches points before ${gap.from} and after the next base backup, not between. ${taking ? 'A new base backup is being taken now.' : 'Take a base backup now: `basement-backup basebackup` (BASEBACKUP_SCHEDULE is off).'} To keep it from happening again, raise max_slot_wal_keep_size and keep the daemon running (pm2).`,
      },
    ),
  });
}

/** What the receivers are tied to: the daemon's stop and its end. */
interface Stoppable {
  readonly stopped: Promise<void>;
  stop(): Promise<void>;
}

/** `daemon` with the WAL receivers of `apps`: started now, stopped when it stops (before `stopped` resolves). */
export function withWalReceivers<D extends Stoppable>(daemon: D, apps: App[], started: StartedWith = { envFiles: [] }): D {
  const chosen = receiverApps(apps);
  if (chosen.length === 0) return daemon;
  const stopping = new AbortController();
  const bases = scheduleBaseBackups(chosen);
  const runs = chosen.map((app) => supervise(app, stopping.signal, bases));
  const drills = schedulePitrDrills(chosen, started);
  let stopped: Promise<void> | undefined;
  const stopReceivers = () =>
    (stopped ??= (async () => {
      // a base backup running waits for WAL the receiver archives: it stops first
      await Promise.all([bases.stop(), drills.stop()]);
      stopping.abort();
      await Promise.all(runs.map(async (r) => (await r.receiver.stop(), await r.running)));
      log.info('WAL receivers stopped');
    })());
  return {
    ...daemon,
    stopped: daemon.stopped.then(stopReceivers),
    stop: () => Promise.all([daemon.stop(), stopReceivers()]).then(() => undefined),
  };
}
