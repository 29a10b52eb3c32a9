import { describe, expect, it } from 'vitest';
import { newerSegment } from '../../src/wal/segment';

// "The newest segment archived", as the receiver's pusher and its record keep it (issue 23):
// pushes end in any order, and only segments count.

const at = (wal: string) => ({ wal, at: `when ${wal}` });

describe('newerSegment', () => {
  it('keeps the newest segment whatever order the pushes end in, across timelines too', () => {
    const ended = ['000000010000000000000005', '000000010000000000000007', '000000010000000000000006', '000000020000000000000006'];
    let kept: ReturnType<typeof at> | undefined;
    const seen: string[] = [];
    for (const wal of ended) {
      kept = newerSegment(kept, at(wal));
      seen.push(kept!.wal);
    }
    expect(seen).toEqual(['000000010000000000000005', '000000010000000000000007', '000000010000000000000007', '000000020000000000000006']);
  });

  it('ignores what is not a segment (a history, a backup label, a partial file) and nothing at all', () => {
    const kept = at('000000010000000000000007');
    for (const wal of ['00000002.history', '000000010000000000000009.00000028.backup', '00000001000000000000000A.partial'])
      expect(newerSegment(kept, at(wal))).toBe(kept);
    expect(newerSegment(kept, undefined)).toBe(kept);
    expect(newerSegment(undefined, at('00000002.history'))).toBeUndefined();
  });

  it('takes the same segment again (a repeated push) with its later time', () => {
    const first = at('000000010000000000000007');
    const again = { wal: first.wal, at: 'later' };
    expect(newerSegment(first, again)).toBe(again);
  });
});
