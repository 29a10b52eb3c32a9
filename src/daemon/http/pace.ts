/** Requests that may wait for their turn at once; beyond it a request is answered 503 at once. */
const MAX_WAITING = 1_000;

/**
 * The HTTP server yields to a running backup or drill (issue 21: the server never delays one):
 * while `busy()` says one runs, at most `perSecond` requests a second are let through, in the
 * order they came; the others wait their turn. Idle, every request passes at once. A flood of
 * requests then costs the machine what `perSecond` requests cost, whatever the clients send: on a
 * small server the backup, the server and its clients share the same few cores.
 */
export class Pacer {
  private readonly waiting: Array<(admitted: boolean) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  /** The earliest time the next request may pass while busy. */
  private next = 0;
  private readonly gapMs: number;

  constructor(
    private readonly busy: () => boolean,
    perSecond: number,
    private readonly maxWaiting = MAX_WAITING,
  ) {
    this.gapMs = 1000 / perSecond;
  }

  /** Resolves true when the request may be answered, false when too many wait already (answer 503). */
  turn(): Promise<boolean> {
    if (!this.busy()) {
      this.release();
      return Promise.resolve(true);
    }
    const now = Date.now();
    if (this.waiting.length === 0 && now >= this.next) {
      this.next = now + this.gapMs;
      return Promise.resolve(true);
    }
    if (this.waiting.length >= this.maxWaiting) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      this.waiting.push(resolve);
      this.schedule();
    });
  }

  /** Lets every waiting request through (the run ended, or the server stops). */
  release(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const admit of this.waiting.splice(0)) admit(true);
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.tick(), Math.max(0, this.next - Date.now()));
  }

  private tick(): void {
    this.timer = undefined;
    if (!this.busy()) return this.release();
    // every slot that is due (a timer fires late, and at a high rate a slot is under 1 ms)
    const now = Date.now();
    while (this.waiting.length > 0 && this.next <= now) {
      this.next += this.gapMs;
      this.waiting.shift()!(true);
    }
    if (this.waiting.length > 0) this.schedule();
  }
}
