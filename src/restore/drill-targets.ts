import type { App } from '../app';
import { listEveryTarget } from '../backup/every-target';
import { lastDrill } from '../backup/status';
import type { VerifyTargets } from '../config/types';
import { asBackupError } from '../errors';
import { log } from '../logger';
import { isGood } from '../repository/repository';
import { verifyBackup } from './verify';

/** What the choice of a drill slot's targets knows of one target. */
export interface DrillCandidate {
  name: string;
  /** Why it cannot be listed now; undefined when it could. */
  problem: string | undefined;
  /** It holds a good backup to drill. */
  hasGood: boolean;
  /** When the newest drill recorded on this target ran (passed or failed); undefined: never. */
  lastDrillAt: string | undefined;
}

/**
 * Pure: the targets a scheduled drill slot restores from, in order. `all`: every target that can
 * be listed and holds a good backup. `rotate`: the one of them drilled longest ago (never drilled
 * first; a tie goes to the earlier in the configuration), so N targets are each drilled every N
 * slots, and a restart or a failed drill does not lose the turn: the records on the targets are
 * the rotation's only state. With nothing to drill anywhere, the first target (its drill then
 * says that there is no backup).
 */
export function chooseDrillTargets(candidates: DrillCandidate[], mode: VerifyTargets): string[] {
  const ready = candidates.filter((c) => c.problem === undefined && c.hasGood);
  if (ready.length === 0) return candidates.slice(0, 1).map((c) => c.name);
  if (mode === 'all') return ready.map((c) => c.name);
  const oldest = ready.reduce((best, c) => (drilledBefore(c, best) ? c : best));
  return [oldest.name];
}

function drilledBefore(a: DrillCandidate, b: DrillCandidate): boolean {
  if (a.lastDrillAt === undefined) return b.lastDrillAt !== undefined;
  return b.lastDrillAt !== undefined && a.lastDrillAt < b.lastDrillAt;
}

/** Lists every target (each within `deadlineMs`) and tells what the choice needs of each. */
export async function drillCandidates(app: App, opts: { deadlineMs: number; signal?: AbortSignal }): Promise<DrillCandidate[]> {
  const listings = await listEveryTarget(app, app.database.db.database, opts);
  return listings.map((l) => {
    const name = l.target.name;
    if (l.state !== 'done') {
      const problem = l.state === 'failed' ? asBackupError(l.error).message : l.state === 'timed out' ? `no answer within ${opts.deadlineMs / 1000}s` : l.state;
      return { name, problem, hasGood: false, lastDrillAt: undefined };
    }
    const manifests = l.value.flatMap((b) => (b.manifest ? [b.manifest] : []));
    return { name, problem: undefined, hasGood: l.value.some(isGood), lastDrillAt: lastDrill(manifests)?.verified_at };
  });
}

/**
 * One scheduled drill slot: the newest good backup of each target chosen (VERIFY_TARGETS: the one
 * drilled longest ago, or each), restored from that target alone (its own manifest and objects,
 * nothing local), each drill recording its result on its target. A drill that cannot run is
 * alerted; a drill that fails alerts itself.
 */
export async function runDrillSlot(app: App, opts: { deadlineMs: number; signal: AbortSignal; attempts: Map<string, string> }): Promise<void> {
  let chosen = [app.targets[0]!.name];
  if (app.targets.length > 1) {
    const candidates = withAttempts(await drillCandidates(app, opts), opts.attempts);
    for (const c of candidates) if (c.problem !== undefined) log.warn(`restore drill: target ${c.name} cannot be listed, not drilled now: ${c.problem}`);
    chosen = chooseDrillTargets(candidates, app.database.verifyTargets);
  }
  for (const target of chosen) {
    if (opts.signal.aborted) return;
    await drillTarget(app, target, opts.signal);
    opts.attempts.set(target, new Date().toISOString());
  }
}

/**
 * Pure: the candidates with each target's last drill the later of its record and this process's
 * last attempt on it. A drill that records nothing (stopped, no backup, a checksum-only check
 * that does not replace an earlier drill's record) still takes its turn: the rotation moves on.
 */
export function withAttempts(candidates: DrillCandidate[], attempts: ReadonlyMap<string, string>): DrillCandidate[] {
  return candidates.map((c) => {
    const tried = attempts.get(c.name);
    return tried !== undefined && (c.lastDrillAt === undefined || tried > c.lastDrillAt) ? { ...c, lastDrillAt: tried } : c;
  });
}

async function drillTarget(app: App, target: string, signal: AbortSignal): Promise<void> {
  const on = app.targets.length > 1 ? ` on ${target}` : '';
  try {
    if (on) log.info(`restore drill of the newest backup${on}, read from ${target} alone`);
    await verifyBackup(app, 'latest', { signal, from: target, currentOnly: true });
  } catch (err) {
    const e = asBackupError(err);
    if (e.code === 'LOCKED') log.warn(`skipped the restore drill${on}: ${e.message}`);
    else if (e.code !== 'NOT_FOUND')
      await app.alerter.send({ kind: 'problem', what: `The restore drill of ${app.database.name}${on} could not run`, error: e });
    else log.warn(`no restore drill${on}: ${e.message}`);
  }
}
