import { describe, expect, it } from 'vitest';
import { chooseDrillTargets, withAttempts, type DrillCandidate } from '../../src/restore/drill-targets';

const c = (name: string, lastDrillAt?: string, over: Partial<DrillCandidate> = {}): DrillCandidate => ({
  name,
  problem: undefined,
  hasGood: true,
  lastDrillAt,
  ...over,
});

describe('chooseDrillTargets', () => {
  it('rotate: the target drilled longest ago, never drilled first, a tie to the first configured', () => {
    expect(chooseDrillTargets([c('local'), c('s3')], 'rotate')).toEqual(['local']);
    expect(chooseDrillTargets([c('local', '2026-12-06T04:00:00Z'), c('s3')], 'rotate')).toEqual(['s3']);
    expect(chooseDrillTargets([c('local', '2026-12-06T04:00:00Z'), c('s3', '2026-12-07T04:00:00Z')], 'rotate')).toEqual(['local']);
    expect(chooseDrillTargets([c('local', '2026-12-08T04:00:00Z'), c('s3', '2026-12-07T04:00:00Z'), c('b2', '2026-12-07T04:00:00Z')], 'rotate')).toEqual([
      's3',
    ]);
  });

  it('a target that cannot be listed or holds no good backup waits; with none ready, the first (its drill says why)', () => {
    expect(chooseDrillTargets([c('local'), c('s3', undefined, { problem: 'no answer' })], 'rotate')).toEqual(['local']);
    expect(chooseDrillTargets([c('local', undefined, { hasGood: false }), c('s3', '2026-12-07T04:00:00Z')], 'rotate')).toEqual(['s3']);
    expect(chooseDrillTargets([c('local', undefined, { hasGood: false }), c('s3', undefined, { problem: 'down' })], 'all')).toEqual(['local']);
  });

  it('all: every target ready, in the configuration order', () => {
    expect(chooseDrillTargets([c('local', '2026-12-08T04:00:00Z'), c('s3'), c('b2', undefined, { problem: 'down' })], 'all')).toEqual(['local', 's3']);
  });

  it("a drill that recorded nothing still takes its turn: this process's last attempt counts beside the records", () => {
    const recorded = [c('local', '2026-12-06T04:00:00Z'), c('s3', '2026-12-07T04:00:00Z')];
    // local was tried at 12-08 (a checksum-only check that did not replace its drill's record): s3's turn
    const tried = withAttempts(recorded, new Map([['local', '2026-12-08T04:00:00Z']]));
    expect(chooseDrillTargets(tried, 'rotate')).toEqual(['s3']);
    expect(chooseDrillTargets(withAttempts(recorded, new Map([['local', '2026-12-05T04:00:00Z']])), 'rotate')).toEqual(['local']);
    expect(withAttempts([c('s3')], new Map([['s3', '2026-12-08T04:00:00Z']]))[0]!.lastDrillAt).toBe('2026-12-08T04:00:00Z');
  });
});
