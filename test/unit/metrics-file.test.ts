import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { metricsFileWriter } from '../../src/daemon/metrics-file';
import { log } from '../../src/logger';
import { renderMetrics } from '../../src/monitor/metrics';
import type { Observation } from '../../src/monitor/observe';
import type { Snapshot } from '../../src/monitor/snapshot';
import { parseMetrics } from '../helpers/prom';
import { tempDir } from '../helpers/temp';

const NOW = '2026-12-06T12:00:00.000Z';

/** A snapshot of `n` databases with two targets each: a textfile of a few hundred kB. */
function bigSnapshot(n: number, failures: number): Snapshot {
  const observations = Array.from({ length: n }, (_, i): Observation => ({
    name: `database_${i}`,
    database: `database_${i}`,
    observed_at: NOW,
    schedule: '0 2 * * *',
    verify_schedule: null,
    max_age_ms: 26 * 3600_000,
    drill_interval_ms: null,
    target_drill_interval_ms: null,
    next_backup_at: '2026-12-07T02:00:00.000Z',
    next_drill_at: null,
    last_attempt: { started_at: NOW, finished_at: NOW, ok: true, code: null },
    last_failure: null,
    failure_streak: 0,
    failures_total: failures,
    last_drill: null,
    running: false,
    targets: ['local', 'offsite'].map((name) => ({
      name,
      location: name,
      error: null,
      good: [{ id: `database_${i}_20261206T020000Z`, created_at: NOW, finished_at: NOW, duration_ms: 1000, size_bytes: 1000 + i, anomaly: null, drill: null }],
      good_count: 1,
      stored_bytes: 1000 + i,
      damaged: 0,
      disk: null,
      last_drill: null,
      encrypted: null,
      immutable: 'none',
    })),
  }));
  return { taken_at: NOW, observations, findings: [], daemon: { started_at: NOW, version: '1.0.0' } };
}

/** A separate process that reads `file` in a loop until `stop` exists, counting reads that are none of `texts`. */
function reader(file: string, texts: string[], stop: string): Promise<{ reads: number; bad: number; sample: string }> {
  const script = `
    const fs = require('fs');
    const [file, stop, ...texts] = process.argv.slice(1);
    const known = new Set(texts.map((t) => fs.readFileSync(t, 'utf8')));
    let reads = 0, bad = 0, sample = '';
    while (!fs.existsSync(stop)) {
      let text;
      try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
      reads++;
      if (!known.has(text)) { bad++; sample = sample || text.slice(-200); }
    }
    process.stdout.write(JSON.stringify({ reads, bad, sample }));`;
  const dir = path.dirname(stop);
  const paths = texts.map((t, i) => {
    const p = path.join(dir, `expected-${i}.txt`);
    fs.writeFileSync(p, t);
    return p;
  });
  const child = spawn(process.execPath, ['-e', script, file, stop, ...paths], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve(JSON.parse(out) as { reads: number; bad: number; sample: string }));
  });
}

afterEach(() => vi.restoreAllMocks());

describe('BACKUP_METRICS_FILE', () => {
  it('is replaced atomically: a reader in another process never sees half a file, and the file is a new inode each time', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'basement-backup.prom');
    const snapshots = [bigSnapshot(400, 1), bigSnapshot(300, 2)];
    const texts = await Promise.all(snapshots.map((s) => renderMetrics(s, { processMetrics: false })));
    expect(texts[0]!.length).toBeGreaterThan(200_000);
    const write = metricsFileWriter(file);
    await write(snapshots[0]!);
    const stop = path.join(dir, 'stop');
    const reading = reader(file, texts, stop);
    const inodes = new Set<number>();
    for (let i = 0; i < 60; i++) {
      await write(snapshots[i % 2]!);
      inodes.add(fs.statSync(file).ino);
    }
    fs.writeFileSync(stop, '');
    const seen = await reading;
    expect(seen.reads).toBeGreaterThan(10);
    expect(seen.bad, `a read saw a partial file ending in ${JSON.stringify(seen.sample)}`).toBe(0);
    expect(inodes.size).toBeGreaterThan(1);
    expect(parseMetrics(fs.readFileSync(file, 'utf8')).get('basement_backup_failures_total')!.metrics).toHaveLength(300);
    // readable by node_exporter's own user whatever the umask; no temporary file left
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);
    expect(fs.readdirSync(dir).filter((n) => n.includes('tmp'))).toEqual([]);
  });

  it('a failed write is logged once per cause, and once when it works again; it never throws', async () => {
    const errors: string[] = [];
    const infos: string[] = [];
    vi.spyOn(log, 'error').mockImplementation((msg, meta) => void errors.push(`${msg} ${JSON.stringify(meta)}`));
    vi.spyOn(log, 'info').mockImplementation((msg) => void infos.push(msg));
    const dir = path.join(tempDir(), 'textfile_collector');
    const write = metricsFileWriter(path.join(dir, 'basement-backup.prom'));
    const s = bigSnapshot(1, 0);
    await write(s);
    await write(s);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/cannot write the metrics file.*ENOENT.*textfile_collector exists/);
    fs.mkdirSync(dir);
    await write(s);
    expect(infos).toEqual(['the metrics file is written again']);
    expect(fs.existsSync(path.join(dir, 'basement-backup.prom'))).toBe(true);
    fs.rmSync(dir, { recursive: true });
    await write(s);
    expect(errors).toHaveLength(2);
  });
});
