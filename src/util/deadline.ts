/** How waiting for a piece of work ended. */
export type Waited<T> = { state: 'done'; value: T } | { state: 'failed'; error: unknown } | { state: 'timed out' } | { state: 'aborted' };

/**
 * Waits for `work` at most `ms`, and not after `signal` aborts. The work itself is not
 * cancelled (for calls that take no AbortSignal): it goes on, and its late result or failure is
 * ignored, so the caller must make sure it can do no harm when it ends later.
 */
export function waitAtMost<T>(work: Promise<T>, ms: number, signal?: AbortSignal): Promise<Waited<T>> {
  if (signal?.aborted) {
    work.catch(() => undefined);
    return Promise.resolve({ state: 'aborted' });
  }
  return new Promise((resolve) => {
    const finish = (w: Waited<T>) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(w);
    };
    const onAbort = () => finish({ state: 'aborted' });
    const timer = setTimeout(() => finish({ state: 'timed out' }), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => finish({ state: 'done', value }),
      (error: unknown) => finish({ state: 'failed', error }),
    );
  });
}
