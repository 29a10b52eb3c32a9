import { describe, expect, it } from 'vitest';
import { chooseJobs, makespan, tableDataSizes } from '../../src/restore/jobs';
import type { Manifest } from '../../src/repository/manifest';

const MB = 1024 * 1024;

/** A custom-format backup whose tables' data are `sizesMb` long, in that order, after a 1 MB table of contents. */
function backup(sizesMb: number[], extra: Partial<Manifest> = {}): Manifest {
  const at: [number, number][] = [];
  let pos = MB;
  sizesMb.forEach((s, i) => {
    at.push([100 + i * 200, pos]);
    pos += s * MB;
  });
  return { id: 'db_1', format: 'custom', size_bytes: pos / 4, dump_size_bytes: pos, data_offsets: { size: 8, at }, ...extra } as Manifest;
}

describe('the sizes of the tables’ data, from the positions the manifest records', () => {
  it('are the distances between the data blocks, the last one up to the end of the archive', () => {
    expect(tableDataSizes(backup([180, 204, 1]))).toEqual([180 * MB, 204 * MB, MB]);
    expect(
      tableDataSizes({
        dump_size_bytes: 1000,
        data_offsets: {
          size: 8,
          at: [
            [5, 900],
            [3, 100],
          ],
        },
      }),
    ).toEqual([800, 100]);
  });

  it('are unknown for a backup that does not record them', () => {
    expect(tableDataSizes({ dump_size_bytes: 1000 })).toBeUndefined();
    expect(tableDataSizes({ dump_size_bytes: undefined, data_offsets: { size: 8, at: [[1, 2]] } })).toBeUndefined();
  });

  it('a makespan is the busiest worker’s load, largest tables first', () => {
    expect(makespan([5, 4, 3, 3, 3], 2)).toBe(10); // 5+3+... : greedy, not the best split (9)
    expect(makespan([97, 1, 1, 1], 2)).toBe(97);
    expect(makespan([10], 4)).toBe(10);
  });
});

function expectChoice(c: { jobs: number; why: string }, jobs: number, why: RegExp): void {
  expect(c.jobs).toBe(jobs);
  expect(c.why).toMatch(why);
}

describe('chooseJobs: one stream unless parallel jobs pay for their copy', () => {
  it('one stream on 2 cores: two jobs and their server sessions would share them', () => {
    expectChoice(chooseJobs(backup([180, 204]), 2), 1, /2 cores/);
    expect(chooseJobs(backup([180, 204]), 1).jobs).toBe(1);
  });

  it('jobs on 4 cores when the data is spread over tables (issue 10’s database: 180 and 204 MB)', () => {
    expectChoice(chooseJobs(backup([180, 204]), 4), 2, /cut its load by 47%/);
    expect(chooseJobs(backup([50, 50, 50, 50, 50, 50, 50, 50]), 16).jobs).toBe(4);
  });

  it('one stream when the largest table holds most of the data, however many cores', () => {
    expectChoice(chooseJobs(backup([440, 4, 3, 2]), 16), 1, /largest table holds 98% of the data/);
  });

  it('one stream for a small archive, and for a plain backup', () => {
    expect(chooseJobs(backup([20, 20]), 8).jobs).toBe(1);
    expectChoice(chooseJobs(backup([180, 204], { format: 'plain' }), 8), 1, /psql/);
  });

  it('jobs by the cores for a backup that does not record where its data lies (older backups)', () => {
    const old = backup([180, 204]);
    delete old.data_offsets;
    expectChoice(chooseJobs(old, 4), 2, /not recorded/);
    expect(chooseJobs(old, 2).jobs).toBe(1);
  });
});
