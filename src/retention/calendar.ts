/**
 * Calendar buckets for grandfather-father-son retention: the day, ISO week, month and year a
 * moment falls in, on the wall clock of an IANA time zone. Pure; the zone's DST rules come from
 * the ICU data Node ships (Intl), so a backup at 00:30 local time on the day clocks change is in
 * that local day, whatever its UTC offset.
 */

export type Period = 'daily' | 'weekly' | 'monthly' | 'yearly';

export const PERIODS: readonly Period[] = ['daily', 'weekly', 'monthly', 'yearly'];

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The local calendar date of `t` (ms since the epoch) in `timeZone`. */
export function localDate(t: number, timeZone: string): { year: number; month: number; day: number } {
  const parts = formatter(timeZone).formatToParts(new Date(t));
  const get = (type: string) => Number(parts.find((p) => p.type === type)!.value);
  return { year: get('year'), month: get('month'), day: get('day') };
}

/** ISO 8601 week of a calendar date: weeks start on Monday, week 1 holds the year's first Thursday. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const d = new Date(Date.UTC(year, month - 1, day));
  const weekday = d.getUTCDay() || 7; // Monday 1 … Sunday 7
  d.setUTCDate(d.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const thursdayYear = d.getUTCFullYear();
  const week = Math.floor((d.getTime() - Date.UTC(thursdayYear, 0, 1)) / 86400_000 / 7) + 1;
  return { year: thursdayYear, week };
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** The bucket of `period` that moment `t` falls in, as shown to operators: 2026-11-30, 2026-W48, 2026-10, 2026. */
export function bucketOf(period: Period, t: number, timeZone: string): string {
  const { year, month, day } = localDate(t, timeZone);
  switch (period) {
    case 'daily':
      return `${pad(year, 4)}-${pad(month)}-${pad(day)}`;
    case 'weekly': {
      const w = isoWeek(year, month, day);
      return `${pad(w.year, 4)}-W${pad(w.week)}`;
    }
    case 'monthly':
      return `${pad(year, 4)}-${pad(month)}`;
    case 'yearly':
      return pad(year, 4);
  }
}
