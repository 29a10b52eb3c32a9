import { BackupError } from '../errors';
import { log } from '../logger';
import type { StopHold } from '../util/stop-hold';
import { printWarning } from './output';

/**
 * SIGINT and SIGTERM of a command that stops cleanly (restore, verify, backup): the first aborts
 * `signal` (what the command runs stops and cleans up), a second exits at once. While a StopHold
 * is held, every signal is deferred instead, with a warning that says so, and the first stop takes
 * effect when the hold is released.
 */
export class StopSignals {
  private readonly controller = new AbortController();
  private held: { what: string; until: string; requested: AbortController } | undefined;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  readonly handle = (sig: NodeJS.Signals): void => {
    const held = this.held;
    if (held) {
      const again = held.requested.signal.aborted || this.controller.signal.aborted ? ' again' : '';
      printWarning(`${sig} received${again} during ${held.what}: deferred until ${held.until}`);
      log.info(`${sig} received during ${held.what}: deferred`);
      held.requested.abort();
      return;
    }
    if (!this.controller.signal.aborted) {
      printWarning(`${sig} received: stopping and cleaning up (send it again to exit at once)`);
      this.controller.abort();
      return;
    }
    process.exit(new BackupError('ABORTED', 'stopped').exitCode);
  };

  readonly hold = (o: { what: string; until: string }): StopHold => {
    const held = { ...o, requested: new AbortController() };
    this.held = held;
    return {
      requested: held.requested.signal,
      release: () => {
        if (this.held !== held) return;
        this.held = undefined;
        if (held.requested.signal.aborted) this.controller.abort();
      },
    };
  };
}
