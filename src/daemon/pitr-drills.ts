/**
 * The daemon's point-in-time recovery drills (WAL_RECEIVE=on): on PITR_VERIFY_SCHEDULE for each
 * database whose WAL a receiver archives. A drill that fails alerts by itself (pitrDrill); one
 * that cannot run at all (e.g. the daemon runs as root) alerts here. Stopped with the receivers,
 * before them: a drill running waits for WAL they archive, and its scratch server is stopped and
 * its directory removed.
 */
import type { App } from '../app';
import { asBackupError } from '../errors';
import { log } from '../logger';
import { pitrDrill } from '../pitr/drill';
import { Scheduler } from '../scheduler/scheduler';

/** How the daemon was started: what the recovered server's restore_command runs wal-fetch with. */
export interface StartedWith {
  envFiles: string[];
}

export interface PitrDrills {
  stop(): Promise<void>;
}

export function schedulePitrDrills(apps: App[], started: StartedWith): PitrDrills {
  const stopping = new AbortController();
  const schedulers: Scheduler[] = [];
  // the scheduler does not wait for a run it stops: the drill running is awaited here, so its server is stopped and its directory removed before the process exits
  const running = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    running.add(p);
    return p.finally(() => running.delete(p));
  };
  for (const app of apps) {
    const expression = app.config.pitr.drillSchedule;
    if (expression === undefined) {
      log.warn(`PITR drills of ${app.database.name} are off (PITR_VERIFY_SCHEDULE=off): nothing proves the archive recovers`);
      continue;
    }
    const s = new Scheduler({
      expression,
      timezone: app.config.timezone,
      name: `PITR drill of ${app.database.name}`,
      run: () => track(drillRun(app, started, stopping.signal)),
    });
    s.start();
    schedulers.push(s);
    log.info(`next PITR drill of ${app.database.name} at ${s.nextRun().toISOString()}`);
  }
  return {
    async stop() {
      stopping.abort();
      await Promise.all(schedulers.map((s) => s.stop()));
      await Promise.all(running);
    },
  };
}

async function drillRun(app: App, started: StartedWith, stopping: AbortSignal): Promise<void> {
  if (stopping.aborted) return;
  try {
    await pitrDrill({ ...app, signal: AbortSignal.any([app.signal, stopping]) }, { envFiles: started.envFiles, cwd: process.cwd() });
  } catch (err) {
    const e = asBackupError(err);
    log.error(`the PITR drill of ${app.database.name} could not run: ${e.message}`, { hint: e.hint });
    await app.alerter.send({ kind: 'problem', what: `The point-in-time recovery drill of ${app.database.name} could not run`, error: e });
  }
}
