import { describe, expect, it } from 'vitest';
import { Limiter } from '../../src/daemon/limiter';

describe('Limiter (BACKUP_MAX_PARALLEL)', () => {
  it('lets `size` holders in at once; the others wait in turn, and a released place goes to the first waiting', async () => {
    const l = new Limiter(2);
    const order: string[] = [];
    const a = await l.acquire();
    const b = await l.acquire();
    expect(l.full).toBe(true);
    const c = l.acquire().then((r) => (order.push('c'), r));
    const d = l.acquire().then((r) => (order.push('d'), r));
    await Promise.resolve();
    expect(order).toEqual([]);
    a!();
    a!(); // a second release of one place frees nothing more
    await c;
    expect(order).toEqual(['c']);
    b!();
    (await d)!();
    expect(order).toEqual(['c', 'd']);
  });

  it('a wait ends with undefined when its signal fires, and gives up its turn', async () => {
    const l = new Limiter(1);
    const held = await l.acquire();
    const stop = new AbortController();
    const waiting = l.acquire(stop.signal);
    const next = l.acquire();
    stop.abort();
    expect(await waiting).toBeUndefined();
    held!();
    expect(await next).toBeTypeOf('function');
    expect(await l.acquire(AbortSignal.abort())).toBeUndefined();
  });
});
