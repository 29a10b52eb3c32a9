import { CronExpressionParser } from 'cron-parser';
import cron from 'node-cron';

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
  if (!cron.validate(expr)) return 'rejected by node-cron';
  try {
    CronExpressionParser.parse(expr, { tz, currentDate: new Date() }).next();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return undefined;
}

/** The first scheduled time strictly after `from`. */
export function nextRun(expr: string, tz: string, from: Date = new Date()): Date {
  return CronExpressionParser.parse(expr, { tz, currentDate: from }).next().toDate();
}

/** The last scheduled time at or before `from`. */
export function previousRun(expr: string, tz: string, from: Date = new Date()): Date {
  const probe = new Date(from.getTime() + 1);
  return CronExpressionParser.parse(expr, { tz, currentDate: probe }).prev().toDate();
}
