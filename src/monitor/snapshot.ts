import type { App } from '../app';
import { evaluate, type Finding } from './findings';
import { observe, type Observation } from './observe';
import { observePitr } from './observe-pitr';
import { archivedEntries } from '../pitr/archived-entries';

/** The daemon itself, as the metrics and the page show it. */
export interface DaemonInfo {
  started_at: string;
  version: string;
}

/** Every database at one moment, and what is wrong: what the alerts, metrics, /healthz, the page and the summary all read. */
export interface Snapshot {
  taken_at: string;
  observations: Observation[];
  findings: Finding[];
  daemon: DaemonInfo;
}

/** Observes every database at once (each target within `deadlineMs`) and evaluates the checks. Never throws for a target that fails. */
export async function takeSnapshot(apps: App[], daemon: DaemonInfo, opts: { now?: Date; deadlineMs?: number; signal?: AbortSignal } = {}): Promise<Snapshot> {
  const now = opts.now ?? new Date();
  const archived = archivedEntries(apps);
  const observations = await Promise.all(
    apps.map(async (app) => {
      const pitr = archived.includes(app)
        ? observePitr(app, { now, deadlineMs: opts.deadlineMs ?? 60_000, ...(opts.signal ? { signal: opts.signal } : {}) })
        : undefined;
      const o = await observe(app, { ...opts, now });
      return pitr ? { ...o, pitr: await pitr } : o;
    }),
  );
  const settings = apps[0]!.config;
  const checks = {
    alertAfterFailures: settings.monitor.alertAfterFailures,
    diskAlertDays: settings.monitor.diskAlertDays,
    maxRestoreMinutes: settings.monitor.maxRestoreMinutes,
    minFreeBytes: settings.minFreeBytes,
  };
  return { taken_at: now.toISOString(), observations, findings: observations.flatMap((o) => evaluate(o, checks, now)), daemon };
}
