import { describe, expect, it, vi } from 'vitest';
import { StopSignals } from '../../src/cli/stop-signals';

describe('StopSignals', () => {
  it('defers every signal during a hold, says so, and stops when the hold is released', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const stops = new StopSignals();
      const hold = stops.hold({ what: 'the switch', until: 'the app is started again' });
      stops.handle('SIGINT');
      stops.handle('SIGTERM');
      expect(hold.requested.aborted).toBe(true);
      expect(stops.signal.aborted).toBe(false);
      expect(stderr.mock.calls.map((c) => String(c[0]))).toEqual([
        'warning: SIGINT received during the switch: deferred until the app is started again\n',
        'warning: SIGTERM received again during the switch: deferred until the app is started again\n',
      ]);
      hold.release();
      hold.release();
      expect(stops.signal.aborted).toBe(true);
    } finally {
      stderr.mockRestore();
    }
  });

  it('a hold released without a signal changes nothing; the first signal after it stops', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const stops = new StopSignals();
      stops.hold({ what: 'the switch', until: 'it is done' }).release();
      expect(stops.signal.aborted).toBe(false);
      stops.handle('SIGTERM');
      expect(stops.signal.aborted).toBe(true);
      expect(String(stderr.mock.calls[0]![0])).toContain('SIGTERM received: stopping and cleaning up');
    } finally {
      stderr.mockRestore();
    }
  });
});
