import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { METRICS } from './metric-list';
import { samplesOf } from './metric-values';
import type { Snapshot } from './snapshot';

/** The Content-Type of what renderMetrics returns (Prometheus text format 0.0.4). */
export const METRICS_CONTENT_TYPE: string = Registry.PROMETHEUS_CONTENT_TYPE;

let processRegistry: Registry | undefined;

/**
 * Node's process metrics (`process_cpu_seconds_total`, `nodejs_heap_size_used_bytes`, …), under
 * their usual unprefixed names so the usual Node dashboards work on them; made once, as their
 * event-loop and GC observers keep state.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** The snapshot's part of the text, rendered once per snapshot however often it is scraped. */
const rendered = new WeakMap<Snapshot, Promise<string>>();

/**
 * The metrics in Prometheus's text format (see METRICS), from a snapshot the daemon already took:
 * rendering lists no storage and runs no query, and a snapshot's metrics are rendered once (about
 * 9 ms for 50 databases with two targets each), so a scrape costs little whatever the targets.
 * `undefined` (before the daemon's first check) gives `basement_backup_up 0`.
 * `processMetrics: false` leaves Node's process metrics out (the textfile: node_exporter exports
 * its own `process_*`, and a name both export fails its scrape).
 */
export async function renderMetrics(snapshot: Snapshot | undefined, opts: { processMetrics?: boolean } = {}): Promise<string> {
  let ours = snapshot && rendered.get(snapshot);
  if (!ours) {
    ours = renderSnapshot(snapshot);
    if (snapshot) rendered.set(snapshot, ours);
  }
  // two expositions of distinct families, one after the other, are one exposition
  return opts.processMetrics === false ? ours : `${await ours}\n${await processMetrics().metrics()}`;
}

async function renderSnapshot(snapshot: Snapshot | undefined): Promise<string> {
  const registry = new Registry();
  const samples = samplesOf(snapshot);
  const byName = new Map<string, Gauge | Counter>();
  // only the metrics with a value: prom-client shows an unset metric without labels as 0, which
  // for a timestamp would read as 1970
  const present = new Set(samples.map((s) => `basement_backup_${s.name}`));
  for (const def of METRICS.filter((d) => present.has(d.name))) {
    const config = { name: def.name, help: def.help, labelNames: def.labels, registers: [registry] };
    byName.set(def.name, def.type === 'counter' ? new Counter(config) : new Gauge(config));
  }
  for (const s of samples) {
    const metric = byName.get(`basement_backup_${s.name}`);
    if (!metric) throw new Error(`metric basement_backup_${s.name} is not in METRICS`);
    if (metric instanceof Counter) metric.inc(s.labels, s.value);
    else metric.set(s.labels, s.value);
  }
  return registry.metrics();
}
