import { describe, expect, it } from 'vitest';
import type { ArchivedWal } from '../../src/wal/archive';
import type { BaseManifest } from '../../src/wal/base-manifest';
import { recoveryWindow, walToRemove } from '../../src/wal/window';

const SEG = 16 * 1024 * 1024;

function wal(name: string, minute = 0): ArchivedWal {
  return { wal: name, sha256: 'a'.repeat(64), object: `${name}-${'a'.repeat(64)}.zst`, size: 100, modified: new Date(Date.UTC(2026, 0, 22, 14, minute)) };
}
const seg = (tl: number, n: number) => `${tl.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

function base(id: string, first: number, last: number, stop: string): BaseManifest {
  return {
    id,
    kind: 'base',
    file: `${id}.tar.zst`,
    start_time: stop,
    stop_time: stop,
    start_lsn: '0/0',
    stop_lsn: '0/0',
    timeline: 1,
    system_identifier: '1',
    pg_version: 15,
    segment_size: SEG,
    wal_first: seg(1, first),
    wal_last: seg(1, last),
    size_bytes: 1,
    sha256: 'x',
    source_bytes: 1,
    compression: 'zstd:1',
    encryption: null,
    duration_ms: 1,
    tool_version: 't',
  };
}

describe('the recovery window', () => {
  it('runs from the end of the oldest base backup whose WAL is complete to the last segment of the unbroken run after it', () => {
    const archive = [2, 3, 4, 5, 6].map((n) => wal(seg(1, n), n));
    const w = recoveryWindow([base('b2', 5, 5, '2026-01-22T14:05:00Z'), base('b1', 2, 3, '2026-01-22T14:03:00Z')], archive);
    expect(w.earliest).toEqual({ time: '2026-01-22T14:03:00Z', base: 'b1' });
    expect(w.latest).toEqual({ time: '2026-01-22T14:06:00.000Z', wal: seg(1, 6) });
    expect(w.gaps).toEqual([]);
  });

  it('a gap: the run stops before it, and the gap is named; a base backup whose own WAL is missing does not count', () => {
    const archive = [2, 3, 5, 6, 8].map((n) => wal(seg(1, n), n));
    const w = recoveryWindow([base('b3', 8, 9, 'c'), base('b2', 5, 5, 'b'), base('b1', 2, 3, 'a')], archive);
    expect(w.earliest).toEqual({ time: 'a', base: 'b1' });
    expect(w.latest?.wal).toBe(seg(1, 6)); // from b2: b1's run ends at 3, b3 lacks segment 9
    expect(w.gaps).toEqual([
      { from: seg(1, 4), to: seg(1, 4) },
      { from: seg(1, 7), to: seg(1, 7) },
    ]);
  });

  it('no base backup: an empty window', () => {
    expect(recoveryWindow([], [wal(seg(1, 1))])).toEqual({ earliest: undefined, latest: undefined, gaps: [] });
  });
});

describe('WAL retention', () => {
  it('removes what comes before the oldest kept base backup needs, on every timeline, and never a history file', () => {
    const archive = [
      wal(seg(1, 2)),
      wal(seg(1, 3)),
      wal(`${seg(1, 3)}.00000028.backup`),
      wal(seg(1, 4)),
      wal(seg(2, 3)),
      wal('00000002.history'),
      wal(seg(2, 5)),
    ];
    const gone = walToRemove([base('b2', 4, 4, 'x')], archive).map((w) => w.wal);
    expect(gone).toEqual([seg(1, 2), seg(1, 3), `${seg(1, 3)}.00000028.backup`, seg(2, 3)]);
  });

  it('with no base backup kept, nothing goes', () => {
    expect(walToRemove([], [wal(seg(1, 2))])).toEqual([]);
  });
});
