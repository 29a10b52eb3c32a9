import { describe, expect, it } from 'vitest';
import { RowDigest } from '../../src/digest/row-digest';
import { compareDigests, type TableDigests } from '../../src/digest/table-digests';

/** Rows shaped like COPY text output: tabs between columns, escapes, NULLs, multi-byte text. */
const ROWS = [
  '1\tAlice\talice@example.test\t2024-01-02 03:04:05+00\t\\N',
  '2\tBob\tbob@example.test\t2024-02-03 04:05:06+00\t{"a": [1, 2]}',
  '3\tCarol\tline one\\nline two\\ttabbed\t2024-03-04 05:06:07+00\t\\\\x00ff',
  '4\tDörte\tüñíçødé ✓\t2024-04-05 06:07:08+00\t12345678901234567890.000000001',
  '5\t\t\t\t',
  '6\tE',
  '7\tFrank the row whose length is not a multiple of four!\t-Infinity\tNaN\t{1,2,NULL}',
];

function text(rows: string[], trailingNewline = true): Buffer {
  return Buffer.from(rows.join('\n') + (trailingNewline && rows.length > 0 ? '\n' : ''), 'utf8');
}

/** Digest of `data` fed in chunks that end at the byte offsets `cuts`. */
function digestOf(data: Buffer, cuts: number[] = []): { rows: number; digest: string } {
  const d = new RowDigest();
  let start = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    d.update(data.subarray(start, cut));
    start = cut;
  }
  d.update(data.subarray(start));
  return d.finish();
}

/** A small deterministic PRNG, so a failure can be reproduced. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function shuffled<T>(items: T[], rand: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('RowDigest', () => {
  const reference = digestOf(text(ROWS));

  it('counts rows and gives a 64-bit hex digest', () => {
    expect(reference.rows).toBe(ROWS.length);
    expect(reference.digest).toMatch(/^[0-9a-f]{16}$/);
  });

  it('of no rows is zero rows and a fixed digest, and empty chunks change nothing', () => {
    const empty = new RowDigest();
    empty.update(Buffer.alloc(0));
    expect(empty.finish()).toEqual({ rows: 0, digest: '0000000000000000' });
    const d = new RowDigest();
    d.update(Buffer.alloc(0));
    d.update(text(ROWS));
    d.update(Buffer.alloc(0));
    expect(d.finish()).toEqual(reference);
  });

  it('does not depend on the order of the rows', () => {
    const rand = prng(42);
    for (let i = 0; i < 20; i++) expect(digestOf(text(shuffled(ROWS, rand)))).toEqual(reference);
    expect(digestOf(text([...ROWS].reverse()))).toEqual(reference);
  });

  it('does not depend on how the bytes are split into chunks, at every single cut point', () => {
    const data = text(ROWS);
    for (let cut = 0; cut <= data.length; cut++) expect(digestOf(data, [cut]), `cut at ${cut}`).toEqual(reference);
  });

  it('does not depend on chunking with several cuts inside rows, nor on byte-by-byte feeding', () => {
    const data = text(ROWS);
    const rand = prng(7);
    for (let i = 0; i < 200; i++) {
      const cuts = Array.from({ length: 1 + Math.floor(rand() * 6) }, () => Math.floor(rand() * (data.length + 1)));
      expect(digestOf(data, cuts), `cuts ${cuts.join(',')}`).toEqual(reference);
    }
    // every byte its own chunk: each row is assembled from pieces carried across many chunks
    expect(
      digestOf(
        data,
        Array.from({ length: data.length }, (_, i) => i),
      ),
    ).toEqual(reference);
    // a chunk that is only the newline ending a carried row, and one that starts with it
    const first = Buffer.byteLength(ROWS[0]!);
    expect(digestOf(data, [first, first + 1])).toEqual(reference);
    expect(digestOf(data, [first - 3, first])).toEqual(reference);
  });

  it('counts a last row without a newline, however it is chunked', () => {
    const noNewline = text(ROWS, false);
    expect(digestOf(noNewline)).toEqual(reference);
    for (let cut = 0; cut <= noNewline.length; cut++) expect(digestOf(noNewline, [cut]), `cut at ${cut}`).toEqual(reference);
    expect(digestOf(Buffer.from('only row'))).toEqual(digestOf(Buffer.from('only row\n')));
    expect(digestOf(Buffer.from('only row')).rows).toBe(1);
  });

  it('changes when any byte of any row changes', () => {
    const seen = new Set([reference.digest]);
    let edits = 0;
    for (let r = 0; r < ROWS.length; r++) {
      const row = Buffer.from(ROWS[r]!, 'utf8');
      for (let i = 0; i < row.length; i++) {
        for (const delta of [1, 0x20, 0x80]) {
          const changed = Buffer.from(row);
          changed[i] = (changed[i]! + delta) & 0xff;
          if (changed[i] === 0x0a) continue; // that would split the row, not change it
          edits++;
          const data = Buffer.concat([text(ROWS.slice(0, r)), changed, Buffer.from('\n'), text(ROWS.slice(r + 1))]);
          const got = digestOf(data);
          expect(got.rows).toBe(ROWS.length);
          expect(got.digest, `row ${r} byte ${i} +${delta}`).not.toBe(reference.digest);
          seen.add(got.digest);
        }
      }
    }
    // no two of these single-byte edits collide with each other either
    expect(edits).toBeGreaterThan(500);
    expect(seen.size).toBe(edits + 1);
  });

  it('changes when a row is added, removed, or a value moves between rows', () => {
    expect(digestOf(text([...ROWS, '8\tnew']))).toMatchObject({ rows: ROWS.length + 1 });
    expect(digestOf(text([...ROWS, '8\tnew'])).digest).not.toBe(reference.digest);
    for (let r = 0; r < ROWS.length; r++) {
      const fewer = digestOf(text(ROWS.filter((_, i) => i !== r)));
      expect(fewer.rows).toBe(ROWS.length - 1);
      expect(fewer.digest, `without row ${r}`).not.toBe(reference.digest);
    }
    // same multiset of column values, different rows
    expect(digestOf(text(['a\tb', 'b\ta'])).digest).not.toBe(digestOf(text(['a\ta', 'b\tb'])).digest);
    // an empty line is a row (a table without columns prints one per row)
    expect(digestOf(Buffer.from('a\n\nb\n')).rows).toBe(3);
    expect(digestOf(Buffer.from('a\n\nb\n')).digest).not.toBe(digestOf(Buffer.from('a\nb\n')).digest);
  });

  it('counts duplicate rows twice: a duplicate is not the same as a single copy', () => {
    const once = digestOf(text(['x\t1', 'y\t2']));
    const twice = digestOf(text(['x\t1', 'y\t2', 'x\t1']));
    const thrice = digestOf(text(['x\t1', 'x\t1', 'y\t2', 'x\t1']));
    expect(once.rows).toBe(2);
    expect(twice.rows).toBe(3);
    expect(thrice.rows).toBe(4);
    expect(new Set([once.digest, twice.digest, thrice.digest]).size).toBe(3);
    // and still independent of where the duplicate sits
    expect(digestOf(text(['x\t1', 'x\t1', 'y\t2']))).toEqual(twice);
    // a row duplicated and another dropped keeps the count but not the digest
    expect(digestOf(text(['x\t1', 'x\t1']))).toMatchObject({ rows: 2 });
    expect(digestOf(text(['x\t1', 'x\t1'])).digest).not.toBe(once.digest);
  });

  it('handles many rows: order and chunking still do not matter', () => {
    const rows = Array.from({ length: 5000 }, (_, i) => `${i}\tuser${i}@example.test\t${(i * 7919) % 1000}.${i % 97}`);
    const ref = digestOf(text(rows));
    expect(ref.rows).toBe(5000);
    const rand = prng(1);
    const data = text(shuffled(rows, rand));
    const cuts = Array.from({ length: 300 }, () => Math.floor(rand() * data.length));
    expect(digestOf(data, cuts)).toEqual(ref);
  });
});

describe('compareDigests', () => {
  const expected: TableDigests = {
    'public.users': { rows: 3, digest: '00000000000000aa' },
    'public.orders': { rows: 10, digest: '00000000000000bb' },
    'Other Schema.Weird Table': { rows: 1, digest: '00000000000000cc' },
    'public.empty': { rows: 0, digest: '0000000000000000' },
  };

  it('reports nothing when every table matches', () => {
    expect(compareDigests(expected, structuredClone(expected))).toEqual([]);
    expect(compareDigests({}, {})).toEqual([]);
  });

  it('reports a table missing from the restored copy', () => {
    const actual = structuredClone(expected);
    delete actual['Other Schema.Weird Table'];
    expect(compareDigests(expected, actual)).toEqual([{ table: 'Other Schema.Weird Table', problem: 'missing from the restored copy' }]);
  });

  it('reports a row-count difference with both counts', () => {
    const actual = structuredClone(expected);
    actual['public.orders'] = { rows: 9, digest: '00000000000000bb' };
    expect(compareDigests(expected, actual)).toEqual([{ table: 'public.orders', problem: '9 rows restored, 10 at backup time' }]);
  });

  it('reports a content difference with both digests', () => {
    const actual = structuredClone(expected);
    actual['public.users'] = { rows: 3, digest: '00000000000000ff' };
    const out = compareDigests(expected, actual);
    expect(out).toHaveLength(1);
    expect(out[0]!.table).toBe('public.users');
    expect(out[0]!.problem).toMatch(/^content differs/);
    expect(out[0]!.problem).toContain('00000000000000ff');
    expect(out[0]!.problem).toContain('00000000000000aa');
  });

  it('reports every differing table, one problem each (a count difference is reported instead of the digest)', () => {
    const actual = structuredClone(expected);
    delete actual['public.empty'];
    actual['public.users'] = { rows: 4, digest: '00000000000000ff' };
    actual['public.orders'] = { rows: 10, digest: '00000000000000ee' };
    const out = compareDigests(expected, actual);
    expect(out.map((m) => m.table).sort()).toEqual(['public.empty', 'public.orders', 'public.users']);
    expect(out.find((m) => m.table === 'public.users')!.problem).toBe('4 rows restored, 3 at backup time');
    expect(out.find((m) => m.table === 'public.orders')!.problem).toMatch(/^content differs/);
    expect(out.find((m) => m.table === 'public.empty')!.problem).toBe('missing from the restored copy');
  });

  it('compares only row counts when the backup recorded counts (BACKUP_DIGEST=counts)', () => {
    const counts: TableDigests = { 'public.users': { rows: 3 }, 'public.orders': { rows: 10 } };
    expect(compareDigests(counts, { 'public.users': { rows: 3, digest: 'ab' }, 'public.orders': { rows: 10 } })).toEqual([]);
    expect(compareDigests(counts, { 'public.users': { rows: 2 }, 'public.orders': { rows: 10 } })).toEqual([
      { table: 'public.users', problem: '2 rows restored, 3 at backup time' },
    ]);
  });
});
