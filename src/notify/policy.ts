import type { DbState } from '../state/store';

/**
 * When to mail. The first failure of a streak alerts at once; while failures continue, a
 * reminder goes out at most every `repeatMinutes` (0: every failure). A success after an
 * alerted streak sends one recovery mail.
 */
export function shouldAlertFailure(state: DbState, now: Date, repeatMinutes: number): boolean {
  if (state.failure_streak <= 1 || state.last_alert_at === null) return true;
  return now.getTime() - Date.parse(state.last_alert_at) >= repeatMinutes * 60_000;
}

export function shouldAlertRecovery(previous: DbState): boolean {
  return previous.failure_streak > 0 && previous.last_alert_at !== null;
}
