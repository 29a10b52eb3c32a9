/**
 * A test file that leaves a handle open (a server, a socket, a pipe, a child process) fails: the
 * active handles (`process.getActiveResourcesInfo()`: what keeps Node's event loop alive) are
 * counted before the file's first hook and after its last, and what a file closes a moment after
 * its tests ended (a socket's close event) gets SETTLE_MS to go. Timers are not counted: they end
 * by themselves, and vitest's own come and go. Run for every file (vitest.config.mts
 * `setupFiles`); its afterAll runs after the file's own.
 */
import { afterAll, beforeAll } from 'vitest';

const SETTLE_MS = 5_000;
const NOT_COUNTED = new Set(['Timeout', 'Immediate']);

function counts(): Map<string, number> {
  const m = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) if (!NOT_COUNTED.has(type)) m.set(type, (m.get(type) ?? 0) + 1);
  return m;
}

/** ["2 × TCPSocketWrap"]: what is open now beyond `before`. */
function beyond(before: Map<string, number>): string[] {
  return [...counts()].filter(([type, n]) => n > (before.get(type) ?? 0)).map(([type, n]) => `${n - (before.get(type) ?? 0)} × ${type}`);
}

let before = new Map<string, number>();

beforeAll(() => {
  before = counts();
});

afterAll(async () => {
  const deadline = Date.now() + SETTLE_MS;
  let left = beyond(before);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = beyond(before);
  }
  if (left.length > 0)
    throw new Error(`this file left open ${left.join(', ')} (process.getActiveResourcesInfo()): close what a test opens, with onTestFinished`);
}, SETTLE_MS + 5_000);
