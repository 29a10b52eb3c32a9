/**
 * Work that a stop signal must not cut short once begun: the switch of `restore --replace`, from
 * just before pm2 stops the app until it is started again. While it is held, SIGINT and SIGTERM
 * (the first and any later one) are deferred: the work learns that a stop was asked for and ends
 * as soon as it cleanly can; the stop takes effect when the hold is released.
 */
export interface StopHold {
  /** Fires when a stop was asked for during the hold. */
  readonly requested: AbortSignal;
  /** Ends the hold; a stop asked for during it takes effect now. Safe to call twice. */
  release(): void;
}

/** Holds the stop signals: `what` is held ("the switch"), `until` when they take effect ("the app is started again"). */
export type HoldStop = (o: { what: string; until: string }) => StopHold;

/** Where nothing sends stop signals (the daemon's use cases, tests in process): a hold that is never asked to stop. */
export const noStopHold: HoldStop = () => ({ requested: new AbortController().signal, release: () => undefined });
