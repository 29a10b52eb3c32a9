import type { DbState } from '../state/store';

/**
 * When to mail. The failure alert goes out at the `after`-th failure in a row
 * (BACKUP_ALERT_AFTER_FAILURES, 1: the first); while failures continue, a reminder goes out at
 * most every `repeatMinutes` (0: every failure). An alert that could not be sent (last_alert_at
 * still null) is tried again at the next failure. A success after an alerted streak sends one
 * recovery mail; a streak that stayed below `after` sends none.
 */
export function shouldAlertFailure(state: DbState, now: Date, repeatMinutes: number, after = 1): boolean {
  if (state.failure_streak < after) return false;
  if (state.failure_streak === after || state.last_alert_at === null) return true;
  return now.getTime() - Date.parse(state.last_alert_at) >= repeatMinutes * 60_000;
}

export function shouldAlertRecovery(previous: DbState): boolean {
  return previous.failure_streak > 0 && previous.last_alert_at !== null;
}
