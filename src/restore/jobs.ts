import os from 'node:os';
import type { Manifest } from '../repository/manifest';

/** How many pg_restore jobs a restore or drill runs with, and why, for the log. */
export interface JobsChoice {
  jobs: number;
  why: string;
}

/** At most this many jobs when not told: beyond it the server's disk, not its cores, sets the pace. */
const MAX_JOBS = 4;
/**
 * Cores per job: each job's server session parses and inserts its rows on one core, while its
 * pg_restore, the decompression and this process need the rest. Measured on 2 cores (issue 10's
 * database), `pg_restore -j2` of a seekable file took 0.74–0.82 of one job's time, and the
 * decompressed copy that jobs need 0.05–0.18 more: no faster than the one stream.
 */
const CORES_PER_JOB = 2;
/** Below this (pg_dump's output), jobs save less than their start-up and the copy cost. */
const MIN_PARALLEL_BYTES = 64 * 1024 * 1024;
/**
 * Jobs pay only when they could cut the data's load by at least this share: the copy costs
 * 0.05–0.18 of a restore, and jobs sharing a server reach about half of their ideal saving.
 */
const MIN_SAVING = 0.3;

/**
 * The jobs a restore or drill of `m` runs with when `--jobs` is not given: one stream (as the
 * manifest's restore_command does) unless parallel jobs pay for the decompressed copy they need
 * (pg_dump wrote the archive to a pipe, so pg_restore --jobs needs a seekable copy). They pay when
 * the machine has cores for them, the archive is large, and its data is spread over tables so
 * that jobs can share it: the manifest records where each table's data starts (`data_offsets`),
 * and a database whose largest table holds most of the data gains nothing from a second job.
 */
export function chooseJobs(m: Manifest, cores = os.availableParallelism()): JobsChoice {
  if (m.format !== 'custom') return { jobs: 1, why: 'a plain (SQL) backup is restored by psql in one stream' };
  const jobs = Math.min(MAX_JOBS, Math.floor(cores / CORES_PER_JOB));
  if (jobs < 2) return { jobs: 1, why: `one stream: this machine has ${cores} core${cores === 1 ? '' : 's'}, too few for jobs to pay for their copy` };
  const size = m.dump_size_bytes ?? m.size_bytes;
  if (size < MIN_PARALLEL_BYTES) return { jobs: 1, why: 'one stream: the archive is too small for jobs to pay' };
  const tables = tableDataSizes(m);
  if (tables === undefined) return { jobs, why: `${jobs} jobs: ${cores} cores (where the data lies is not recorded)` };
  const total = tables.reduce((a, b) => a + b, 0);
  const saving = total > 0 ? 1 - makespan(tables, jobs) / total : 0;
  if (saving < MIN_SAVING) {
    const largest = total > 0 ? Math.round((100 * Math.max(...tables)) / total) : 100;
    return { jobs: 1, why: `one stream: its largest table holds ${largest}% of the data, so jobs could not share the load` };
  }
  return { jobs, why: `${jobs} jobs: ${cores} cores, and the data is spread over tables (jobs could cut its load by ${Math.round(saving * 100)}%)` };
}

/** The size of each table's data in pg_dump's output, from the positions the manifest records; undefined when not recorded. */
export function tableDataSizes(m: Pick<Manifest, 'data_offsets' | 'dump_size_bytes'>): number[] | undefined {
  const at = m.data_offsets?.at;
  if (!Array.isArray(at) || at.length === 0 || m.dump_size_bytes === undefined) return undefined;
  const starts = at.map((p) => p[1]).sort((a, b) => a - b);
  return starts.map((s, i) => Math.max(0, (starts[i + 1] ?? m.dump_size_bytes!) - s));
}

/** The time (in bytes) `jobs` workers take to load `sizes`, each table to the worker free first, largest first (as pg_restore schedules). */
export function makespan(sizes: number[], jobs: number): number {
  const load = new Array<number>(jobs).fill(0);
  for (const s of [...sizes].sort((a, b) => b - a)) {
    const i = load.indexOf(Math.min(...load));
    load[i]! += s;
  }
  return Math.max(...load);
}
