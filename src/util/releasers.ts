/** Undoes or frees one resource: close a connection, remove a half-written object, release a lock. */
export type Releaser = () => void | Promise<void>;

/**
 * Cleanup registered where each resource is taken, run in reverse order (last in, first out)
 * when the work using them ends, however it ends. After graphile-worker's `withReleasers`.
 */
export class Releasers {
  private readonly stack: Releaser[] = [];

  /** Registers `release` to run when the scope ends, before everything registered earlier. */
  add(release: Releaser): void {
    this.stack.push(release);
  }

  /**
   * Runs every registered releaser once, newest first, each even when an earlier one failed.
   * Throws the first failure after all have run.
   */
  async releaseAll(): Promise<void> {
    let first: { error: unknown } | undefined;
    for (let r = this.stack.pop(); r !== undefined; r = this.stack.pop()) {
      try {
        await r();
      } catch (error) {
        first ??= { error };
      }
    }
    if (first) throw first.error;
  }
}

/**
 * Runs `work` with a fresh stack of releasers and releases them all when it settles. An error of
 * `work` wins over a releaser's (which is then lost); when `work` succeeds, a releaser's error is thrown.
 */
export async function withReleasers<T>(work: (releasers: Releasers) => Promise<T>): Promise<T> {
  const releasers = new Releasers();
  let result: T;
  try {
    result = await work(releasers);
  } catch (err) {
    await releasers.releaseAll().catch(() => undefined);
    throw err;
  }
  await releasers.releaseAll();
  return result;
}
