import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EarlyWarnings, UNLISTED_AFTER_MS } from '../../src/daemon/early-warnings';
import type { Finding } from '../../src/monitor/findings';
import type { Observation, TargetObservation } from '../../src/monitor/observe';
import type { Snapshot } from '../../src/monitor/snapshot';
import { Alerter } from '../../src/notify/alerts';
import { tempDir } from '../helpers/cli';
import { startPingServer } from '../helpers/ping-server';

const T0 = Date.parse('2026-03-02T10:00:00.000Z');
const MIN = 60_000;

function target(name: string, error: string | null): TargetObservation {
  const good = error
    ? []
    : [
        {
          id: 'app_1',
          created_at: new Date(T0 - 30 * 3600_000).toISOString(),
          finished_at: new Date(T0 - 30 * 3600_000).toISOString(),
          duration_ms: 1000,
          size_bytes: 1000,
          anomaly: null,
          drill: null,
        },
      ];
  return {
    name,
    location: `/b/${name}`,
    error,
    good,
    good_count: null,
    stored_bytes: null,
    damaged: null,
    disk: null,
    last_drill: null,
    encrypted: null,
    immutable: 'none',
  };
}

function finding(kind: Finding['kind'], t: string | null): Finding {
  return { key: [kind, 'app', ...(t ? [t] : [])].join(':'), kind, name: 'app', target: t, title: `${kind} of app`, message: 'm', fix: 'f', health: false };
}

/** A snapshot at T0 + `at` of one database "app" with targets local and s3 (`down`: cannot be listed). */
function snap(at: number, findings: Finding[], down: string[] = []): Snapshot {
  const o = {
    name: 'app',
    database: 'app_db',
    max_age_ms: 26 * 3600_000,
    targets: ['local', 's3'].map((n) => target(n, down.includes(n) ? 'no answer in time' : null)),
  };
  return { taken_at: new Date(T0 + at).toISOString(), observations: [o as Observation], findings, daemon: { started_at: '', version: '' } };
}

async function hook(status = 200) {
  const server = await startPingServer({ status });
  return { server, alerter: new Alerter(undefined, { url: server.url, totalMs: 1500 }) };
}

const kinds = (s: { received: { body: string }[] }) =>
  s.received.map((r) => (JSON.parse(r.body) as { kind: string; code: string }).kind + ':' + (JSON.parse(r.body) as { code: string }).code);

describe('early warnings: when one is sent', () => {
  it('a target that cannot be listed warns only after 2 checks and 15 min, and clears once', async () => {
    const { server, alerter } = await hook();
    const w = new EarlyWarnings(tempDir(), alerter);
    const down = [finding('unlisted', 's3')];
    await w.onSnapshot(snap(0, down, ['s3']));
    await w.onSnapshot(snap(5 * MIN, down, ['s3']));
    await w.onSnapshot(snap(10 * MIN, [], [])); // back: never announced, so nothing clears
    expect(server.received).toHaveLength(0);
    await w.onSnapshot(snap(20 * MIN, down, ['s3']));
    await w.onSnapshot(snap(20 * MIN + UNLISTED_AFTER_MS - 1, down, ['s3']));
    expect(server.received).toHaveLength(0);
    await w.onSnapshot(snap(20 * MIN + UNLISTED_AFTER_MS, down, ['s3']));
    await w.onSnapshot(snap(40 * MIN, down, ['s3']));
    await w.onSnapshot(snap(45 * MIN, []));
    await w.onSnapshot(snap(50 * MIN, []));
    expect(kinds(server)).toEqual(['warning:unlisted', 'warning-cleared:unlisted']);
  });

  it('a finding about a target that cannot be listed now is not cleared: whether it cleared is not known', async () => {
    const { server, alerter } = await hook();
    const w = new EarlyWarnings(tempDir(), alerter);
    await w.onSnapshot(snap(0, [finding('stale', 's3'), finding('size', null)]));
    await w.onSnapshot(snap(MIN, [finding('unlisted', 's3')], ['s3']));
    expect(kinds(server)).toEqual(['warning:stale', 'warning:size']);
    await w.onSnapshot(snap(2 * MIN, []));
    expect(kinds(server).slice(2).sort()).toEqual(['warning-cleared:size', 'warning-cleared:stale']);
  });

  it('an alert that could not be sent is sent at the next check; failing is left to the failure alert', async () => {
    const dir = tempDir();
    const refused = await hook(503);
    await new EarlyWarnings(dir, refused.alerter).onSnapshot(snap(0, [finding('drill-failed', null), finding('failing', null)]));
    expect(refused.server.received.length).toBeGreaterThan(0); // tried, and retried within its deadline
    const saved = path.join(dir, 'monitor-alerts.json');
    expect(fs.statSync(saved).mode & 0o777).toBe(0o600);

    const ok = await hook();
    const w = new EarlyWarnings(dir, ok.alerter);
    await w.onSnapshot(snap(MIN, [finding('drill-failed', null), finding('failing', null)]));
    await w.onSnapshot(snap(2 * MIN, [finding('drill-failed', null), finding('failing', null)]));
    expect(kinds(ok.server)).toEqual(['warning:drill-failed']);
    expect(JSON.parse(ok.server.received[0]!.body)).toMatchObject({ database: 'app_db', name: 'app', key: 'drill-failed:app', fix: 'f' });
  });
});

describe('early warnings: drills that never ran', () => {
  it('are overdue only after twice the drill interval (at least 15 min) from when a check first saw it', async () => {
    const { server, alerter } = await hook();
    const w = new EarlyWarnings(tempDir(), alerter);
    const overdue = [finding('drill-overdue', null)];
    const withDrills = (at: number) => {
      const s = snap(at, overdue);
      s.observations = s.observations.map((o) => ({ ...o, drill_interval_ms: 2000, target_drill_interval_ms: 4000, last_drill: null }));
      return s;
    };
    await w.onSnapshot(withDrills(0));
    await w.onSnapshot(withDrills(14 * MIN));
    expect(server.received).toHaveLength(0);
    await w.onSnapshot(withDrills(15 * MIN));
    expect(kinds(server)).toEqual(['warning:drill-overdue']);
  });

  it('a target never drilled is overdue only after twice its own interval (at least 15 min) from when a check first saw it', async () => {
    const { server, alerter } = await hook();
    const w = new EarlyWarnings(tempDir(), alerter);
    const overdue = [finding('target-drill-overdue', 's3')];
    const withDrills = (at: number) => {
      const s = snap(at, overdue);
      s.observations = s.observations.map((o) => ({ ...o, drill_interval_ms: 5 * MIN, target_drill_interval_ms: 10 * MIN }));
      return s;
    };
    await w.onSnapshot(withDrills(0));
    await w.onSnapshot(withDrills(19 * MIN));
    expect(server.received).toHaveLength(0);
    await w.onSnapshot(withDrills(20 * MIN));
    expect(kinds(server)).toEqual(['warning:target-drill-overdue']);
  });
});
