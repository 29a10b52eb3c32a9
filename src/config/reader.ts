import path from 'node:path';
import { ConfigError } from '../errors';

/**
 * Reads variables of one source (the environment, or a database entry over it), each checked as
 * it is read: a bad value is recorded in `errors` (naming the variable and the fix) and the
 * default taken, so that one report lists every problem.
 */
export class Reader {
  readonly errors: ConfigError[] = [];
  constructor(
    private readonly vars: Record<string, string | undefined>,
    private readonly cwd: string,
    /** Whether cron expressions and the time zone are checked (ConfigOptions.checkSchedules). */
    readonly checkSchedules = true,
  ) {}

  raw(name: string): string | undefined {
    const v = this.vars[name];
    if (v === undefined) return undefined;
    const t = v.trim();
    return t === '' ? undefined : t;
  }

  fail(name: string, message: string, hint?: string): void {
    this.errors.push(new ConfigError(name, message, hint));
  }

  string(name: string, def: string): string {
    return this.raw(name) ?? def;
  }

  int(name: string, def: number, min: number, max: number, hint?: string): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!/^-?\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.fail(
        name,
        `"${v}" is not a whole number from ${min} to ${max}`,
        hint ?? `Set ${name} to a number like ${def}, or remove it to use the default (${def}).`,
      );
      return def;
    }
    return Number(v);
  }

  /** A positive number, decimals allowed (0.5 = half a unit). */
  decimal(name: string, def: number, max: number, hint: string): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!/^\d+(\.\d+)?$|^\.\d+$/.test(v) || Number(v) <= 0 || Number(v) > max) {
      this.fail(name, `"${v}" is not a number above 0 and at most ${max}`, hint);
      return def;
    }
    return Number(v);
  }

  bool(name: string, def: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return def;
    const l = v.toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(l)) return true;
    if (['false', '0', 'no', 'off'].includes(l)) return false;
    this.fail(name, `"${v}" is not true or false`, `Set ${name}=true or ${name}=false.`);
    return def;
  }

  oneOf<T extends string>(name: string, def: T, allowed: readonly T[]): T {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!(allowed as readonly string[]).includes(v.toLowerCase())) {
      this.fail(name, `"${v}" is not one of ${allowed.join(', ')}`, `Set ${name} to one of: ${allowed.join(', ')}.`);
      return def;
    }
    return v.toLowerCase() as T;
  }

  dir(name: string, def: string): string {
    return path.resolve(this.cwd, this.string(name, def));
  }
}
