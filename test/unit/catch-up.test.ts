import { describe, expect, it } from 'vitest';
import { backupCatchUp, drillCatchUp, type TargetView } from '../../src/scheduler/catch-up';
import type { Manifest } from '../../src/repository/manifest';

const NOW = new Date('2026-03-10T12:00:00Z');
/** The last scheduled time before the start. */
const DUE = new Date('2026-03-10T02:00:00Z');

function backup(created_at: string, seq: number): Manifest {
  return { id: `db_${seq}`, seq, created_at } as Manifest;
}

const BEFORE = backup('2026-03-09T02:00:05Z', 1);
const AFTER = backup('2026-03-10T02:00:05Z', 2);
const FUTURE = backup('2026-03-11T02:00:05Z', 3);

function view(name: string, good: Manifest[] | undefined, lastDrillAt?: string): TargetView {
  return { name, good, problem: good ? undefined : 'connection refused', lastDrillAt };
}

describe('backupCatchUp', () => {
  it('runs when no target holds a backup taken since the run that was due', () => {
    expect(backupCatchUp([view('local', [BEFORE]), view('s3', [])], DUE, NOW)).toEqual({
      run: true,
      warn: false,
      why: 'catch-up: the run due at 2026-03-10T02:00:00.000Z has no backup (newest: 2026-03-09T02:00:05Z); backing up now',
    });
  });

  it('does not run when any target holds one, also when the first cannot be listed', () => {
    expect(backupCatchUp([view('local', [BEFORE]), view('s3', [AFTER])], DUE, NOW)).toMatchObject({ run: false });
    expect(backupCatchUp([view('local', [BEFORE]), view('s3', [AFTER])], DUE, NOW).why).toContain('db_2 on s3');
    expect(backupCatchUp([view('local', undefined), view('s3', [AFTER])], DUE, NOW)).toMatchObject({ run: false });
  });

  it('runs when no target can be listed, naming each', () => {
    expect(backupCatchUp([view('local', undefined), view('s3', undefined)], DUE, NOW)).toEqual({
      run: true,
      warn: true,
      why: 'catch-up: cannot list the backups on local (connection refused), s3 (connection refused); backing up now',
    });
  });

  it('names the targets it could not list when the others hold no backup since the run due', () => {
    expect(backupCatchUp([view('local', [BEFORE]), view('s3', undefined)], DUE, NOW).why).toBe(
      'catch-up: the run due at 2026-03-10T02:00:00.000Z has no backup (newest: 2026-03-09T02:00:05Z); cannot list s3 (connection refused); backing up now',
    );
  });

  it('a backup dated in the future does not count', () => {
    const c = backupCatchUp([view('local', [FUTURE, BEFORE])], DUE, NOW);
    expect(c.run).toBe(true);
    expect(c.why).toContain(', dated in the future)');
  });
});

describe('drillCatchUp', () => {
  it('runs when the first target held a backup at the drill slot and no drill ended since', () => {
    expect(drillCatchUp([view('local', [BEFORE], '2026-03-09T04:10:00Z')], DUE)).toEqual({
      run: true,
      why: 'catch-up: the restore drill due at 2026-03-10T02:00:00.000Z did not run (last drill: 2026-03-09T04:10:00Z); drilling now',
    });
    expect(drillCatchUp([view('local', [BEFORE]), view('s3', [BEFORE])], DUE).why).toContain('(last drill: never); drilling now');
  });

  it('does not run when a drill ended after the slot, on any target, whatever its verdict', () => {
    expect(drillCatchUp([view('local', [AFTER, BEFORE], '2026-03-10T02:03:00Z')], DUE)).toMatchObject({ run: false });
    expect(drillCatchUp([view('local', [BEFORE]), view('s3', [BEFORE], '2026-03-10T09:00:00Z')], DUE)).toMatchObject({ run: false });
  });

  it('does not run when the first target held nothing to drill at the slot', () => {
    expect(drillCatchUp([view('local', [AFTER]), view('s3', [BEFORE])], DUE)).toEqual({
      run: false,
      why: 'restore drill: local held no backup to drill at 2026-03-10T02:00:00.000Z; nothing to catch up',
    });
  });

  it('cannot tell when the first target (where drills run) cannot be listed', () => {
    expect(drillCatchUp([view('local', undefined), view('s3', [BEFORE])], DUE)).toEqual({
      run: false,
      warn: true,
      why: 'restore drill: cannot tell whether the drill due at 2026-03-10T02:00:00.000Z ran: local (connection refused)',
    });
  });
});
