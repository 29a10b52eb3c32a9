/**
 * A test file that leaves a handle open (a server, a socket, a pipe, a child process) fails.
 * `process.getActiveResourcesInfo()` lists what keeps Node's event loop alive (an unref'd handle,
 * such as an idle keep-alive socket of an HTTP agent or a signal listener, is not listed); what a
 * file holds beyond what the worker held before its first hook, once its last hook has run, is a
 * leak. What a file closes a moment after its tests ended (a socket's close event, a child's exit)
 * gets SETTLE_MS to go. Timers are not counted: they end by themselves, and vitest's own come and
 * go. Run for every file (vitest.config.mts `setupFiles`, which vitest runs before each file, also
 * with `isolate: false`); its afterAll runs after the file's own (hooks run as a stack).
 */
import { afterAll, beforeAll } from 'vitest';

const SETTLE_MS = Number(process.env.TEST_LEAK_SETTLE_MS ?? 5_000); // shorter in its own test
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
  // vitest reaches this hook through promises alone; a handle a test started a tick before its end
  // (server.listen(port, host) binds on the next tick) exists only once the event loop has turned
  await new Promise((r) => setImmediate(r));
  let left = beyond(before);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = beyond(before);
  }
  if (left.length > 0)
    throw new Error(
      `this file left open ${left.join(', ')} (process.getActiveResourcesInfo()) ${SETTLE_MS / 1000} s after its tests: ` +
        'close what a test opens when it finishes (onTestFinished; the helpers in test/helpers/ do), and wait for a child to exit',
    );
}, SETTLE_MS + 5_000);
