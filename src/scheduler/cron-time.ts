/*
 * The cron parsers (and, through cron-parser's luxon, the time-zone data) are loaded on first
 * use: reading the configuration of a command that checks no schedule (cli/open.ts) must not load
 * them (~50 ms of every start of a command PostgreSQL runs per WAL file).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const parser = (): typeof import('cron-parser').CronExpressionParser => (require('cron-parser') as typeof import('cron-parser')).CronExpressionParser;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeCron = (): typeof import('node-cron').default => (require('node-cron') as typeof import('node-cron')).default;

/** Returns a reason when `tz` is not a time zone this Node knows, else undefined. */
export function validateTimezone(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return undefined;
  } catch {
    return 'is not a known time zone';
  }
}

/** Returns a reason when `expr` is not a 5- or 6-field cron expression both parsers accept. */
export function validateCron(expr: string, tz: string): string | undefined {
  const fields = expr.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) return `${fields} fields; expected 5 or 6`;
  if (!nodeCron().validate(expr)) return 'rejected by node-cron';
  try {
    parser().parse(expr, { tz, currentDate: new Date() }).next();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return undefined;
}

/** The first scheduled time strictly after `from`. */
export function nextRun(expr: string, tz: string, from: Date = new Date()): Date {
  return parser().parse(expr, { tz, currentDate: from }).next().toDate();
}

/** The last scheduled time at or before `from`. */
export function previousRun(expr: string, tz: string, from: Date = new Date()): Date {
  const probe = new Date(from.getTime() + 1);
  return parser().parse(expr, { tz, currentDate: probe }).prev().toDate();
}

/**
 * The longest wait between two runs of `expr` over the next 400 runs or 8 weeks, whichever ends
 * first: what "overdue" means for that schedule (a daily one: 24 h; weekdays only: 72 h).
 */
export function longestGapMs(expr: string, tz: string, from: Date = new Date()): number {
  const it = parser().parse(expr, { tz, currentDate: from });
  const end = from.getTime() + 56 * 86_400_000;
  let prev = it.next().toDate().getTime();
  let longest = 0;
  for (let i = 0; i < 400 && prev < end; i++) {
    const next = it.next().toDate().getTime();
    longest = Math.max(longest, next - prev);
    prev = next;
  }
  return longest;
}
