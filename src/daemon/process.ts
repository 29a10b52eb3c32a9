import type { App } from '../app';
import { asBackupError } from '../errors';
import { closeLogger, log } from '../logger';
import { VERSION } from '../version';
import { startControlSocket } from './control';
import { startDaemons } from './daemon';
import type { StartedWith } from './pitr-drills';
import { EarlyWarnings } from './early-warnings';
import { startHttpServer } from './http/server';
import { metricsFileWriter } from './metrics-file';
import { SummaryMail } from './summary-mail';
import { Watch } from './watch';

/** The oldest Node line still maintained (Node 20 reached its end of life in April 2026). */
const OLDEST_MAINTAINED_NODE = 22;

/**
 * The only place that touches `process` for the daemon: signals, the pm2 ready message, and
 * crashes. First SIGINT/SIGTERM: graceful stop; second: abort the running backup now.
 * Resolves with the exit code.
 */
export async function runDaemonProcess(apps: App[], started: StartedWith = { envFiles: [] }): Promise<number> {
  const app = apps[0]!;
  const watch = new Watch(apps, { started_at: new Date().toISOString(), version: VERSION });
  // Before anything starts: a port in use stops the daemon here with a CONFIG error (exit 2).
  // It yields to the daemon's runs once the daemon has started.
  let runsNow: () => boolean = () => false;
  const http = app.config.monitor.http && (await startHttpServer(app.config.monitor.http, watch, () => runsNow()));
  let crashed: ((code: number) => void) | undefined;
  const crash = new Promise<number>((r) => (crashed = r));
  const onFatal = (err: unknown) => {
    const e = asBackupError(err);
    log.error('unexpected error; exiting so pm2 restarts the daemon', { error: e.message, stack: (err as Error)?.stack });
    void app.alerter.send({ kind: 'problem', what: 'The basement-backup daemon crashed and will be restarted', error: e }).finally(() => crashed?.(1));
  };
  process.on('uncaughtException', onFatal);
  process.on('unhandledRejection', onFatal);
  if (Number(process.versions.node.split('.')[0]) < OLDEST_MAINTAINED_NODE) {
    log.warn(
      `Node ${process.versions.node} is past its end of life: it gets no security fixes. Install Node ${OLDEST_MAINTAINED_NODE}, 24 or 26 and restart (pm2 restart basement-backup).`,
    );
  }

  // The handlers are in place before the daemon starts: its first log lines (which a supervisor
  // or a test may answer with a signal at once) are written while it starts. A handler runs only
  // on a later turn of the event loop, when `daemon` is set.
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info(`${sig} received: shutting down (send it again to abort a running backup now)`);
      void daemon.stop();
      void control.then((c) => c.stop());
    } else {
      log.warn(`${sig} received again: forcing`);
      daemon.force();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Starting waits on nothing (work that needs a storage target or the database runs in the
  // background, and a signal cancels it).
  // each snapshot's steps in turn: the textfile first, as the alerts may wait on a mail server
  if (app.config.monitor.metricsFile !== undefined) watch.onSnapshot(metricsFileWriter(app.config.monitor.metricsFile));
  const warnings = new EarlyWarnings(app.config.stateDir, app.alerter);
  watch.onSnapshot((s) => warnings.onSnapshot(s));
  const summary = summaryMail(app, watch);
  const daemon = startDaemons(apps, () => watch.refresh(), started);
  // `basebackup` by hand hands its base backup to this process (control.ts)
  let controlBusy = () => false;
  const control = startControlSocket(apps).then((c) => ((controlBusy = () => c.busy()), c));
  runsNow = () => daemon.busy() || controlBusy();
  watch.start();
  // pm2 (wait_ready: true) waits for this before it considers the app online.
  if (process.send) process.send('ready');

  const code = await Promise.race([daemon.stopped.then(() => 0), crash]);
  await (await control).stop();
  summary?.stop();
  await Promise.all([watch.stop(), http?.close()]);
  // last, once every run, receiver and server has ended (not when the first part of it has)
  if (code === 0) log.info('daemon stopped');
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await closeLogger();
  return code;
}

/** The summary mail, when BACKUP_SUMMARY_SCHEDULE is set. */
function summaryMail(app: App, watch: Watch): SummaryMail | undefined {
  const schedule = app.config.monitor.summarySchedule;
  if (schedule === undefined) return undefined;
  const summary = new SummaryMail(schedule, app.config.timezone, app.config.stateDir, app.alerter, () => watch.refresh());
  watch.onSnapshot((s) => summary.onSnapshot(s));
  summary.start();
  return summary;
}
