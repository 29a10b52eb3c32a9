import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { holdLock, lockHolder } from '../../src/lock/file-lock';
import { Releasers, withReleasers } from '../../src/util/releasers';
import { tempDir } from '../helpers/temp';

describe('withReleasers', () => {
  it('releases last in, first out after the work succeeds, and returns its result', async () => {
    const order: string[] = [];
    const result = await withReleasers(async (r) => {
      r.add(() => void order.push('lock'));
      r.add(async () => {
        await Promise.resolve();
        order.push('connection');
      });
      r.add(() => void order.push('writer'));
      await Promise.resolve();
      order.push('work');
      return 42;
    });
    expect(result).toBe(42);
    expect(order).toEqual(['work', 'writer', 'connection', 'lock']);
  });

  it('releases everything when the work fails, and the work’s error wins over a releaser’s', async () => {
    const order: string[] = [];
    const work = withReleasers(async (r) => {
      r.add(() => void order.push('lock'));
      r.add(() => {
        order.push('broken');
        throw new Error('release failed');
      });
      r.add(() => void order.push('writer'));
      await Promise.resolve();
      throw new Error('work failed');
    });
    await expect(work).rejects.toThrow('work failed');
    expect(order).toEqual(['writer', 'broken', 'lock']);
  });

  it('runs every releaser even when one fails, then throws the first failure', async () => {
    const order: string[] = [];
    const work = withReleasers(async (r) => {
      r.add(() => {
        order.push('first');
        throw new Error('first registered');
      });
      r.add(() => {
        order.push('second');
        throw new Error('second registered');
      });
      await Promise.resolve();
      return 'done';
    });
    await expect(work).rejects.toThrow('second registered');
    expect(order).toEqual(['second', 'first']);
  });

  it('runs each releaser once, however often the stack is released', async () => {
    const r = new Releasers();
    let runs = 0;
    r.add(() => void runs++);
    await r.releaseAll();
    await r.releaseAll();
    expect(runs).toBe(1);
  });
});

describe('holdLock', () => {
  it('holds the lock while the work runs and releases it when the work ends, however it ends', async () => {
    const file = path.join(tempDir(), 'locks', 'db.lock');
    const held = await withReleasers(async (r) => {
      holdLock(r, file, 'backup of db');
      await Promise.resolve();
      return lockHolder(file);
    });
    expect(held).toMatchObject({ pid: process.pid, purpose: 'backup of db' });
    expect(fs.existsSync(file)).toBe(false);
    const failed = withReleasers(async (r) => {
      holdLock(r, file, 'prune of db');
      expect(() => holdLock(r, file, 'sync of db')).toThrow(expect.objectContaining({ code: 'LOCKED' }));
      await Promise.resolve();
      throw new Error('work failed');
    });
    await expect(failed).rejects.toThrow('work failed');
    expect(fs.existsSync(file)).toBe(false);
  });
});
