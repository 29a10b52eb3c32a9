/** 28 kB, 1.4 MB, 3.2 GB (decimal units, like du -h --si). */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 999.95 && i < units.length - 1);
  return `${v >= 100 ? Math.round(v) : v.toFixed(1).replace(/\.0$/, '')} ${units[i]}`;
}

/** 45s, 12m, 5h 3m, 2d 4h */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  const d = Math.floor(h / 24);
  return `${d}d ${h % 24}h`;
}

/** 30 min, 90 s: how long a program waited, for messages. */
export function formatWait(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = s / 60;
  return `${Number.isInteger(m) ? m : m.toFixed(1)} min`;
}

/**
 * `from` plus a duration: `12h`, `30d`, `2w` are fixed spans; `6m` and `1y` are calendar months
 * and years (UTC), a day the month lacks giving its last (31 January + 1m is the end of February).
 * Undefined when `text` is not one; an invalid Date when it is too far for a Date.
 */
export function addDuration(from: Date, text: string): Date | undefined {
  const m = /^(\d+)\s*([hdwmy])$/i.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2]!.toLowerCase() as 'h' | 'd' | 'w' | 'm' | 'y';
  if (unit === 'm' || unit === 'y') return addMonths(from, unit === 'y' ? n * 12 : n);
  return new Date(from.getTime() + n * { h: 3600e3, d: 86400e3, w: 7 * 86400e3 }[unit]);
}

/** `from` plus `months` calendar months (UTC), the day clamped to the last of the month reached. */
export function addMonths(from: Date, months: number): Date {
  const year = from.getUTCFullYear();
  const month = from.getUTCMonth() + months;
  const last = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  const at = new Date(from.getTime());
  at.setUTCFullYear(year, month, Math.min(from.getUTCDate(), last));
  return at;
}

// Control characters (newlines, escapes), line/paragraph separators and bidirectional overrides:
// they would break or disguise a table row, a log line or a terminal.
const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, 'gu');

/** `value` fit for one line of a terminal: unprintable characters escaped, cut to `max` characters with "…". */
export function printable(value: string, max = 60): string {
  const escape = (s: string) => s.replace(UNPRINTABLE_ALL, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
  const chars = [...value];
  return chars.length <= max ? escape(value) : `${escape(chars.slice(0, max).join(''))}…`;
}

/** A value as a message shows it: quoted, printable, and when cut, with its length. */
export function shown(value: string, max = 60): string {
  const length = [...value].length;
  return `"${printable(value, max)}"${length > max ? ` (${length} characters)` : ''}`;
}

/** Whether `value` holds a control character, a line separator or a bidirectional override. */
export function hasUnprintable(value: string): boolean {
  return UNPRINTABLE.test(value);
}

/** `text` on lines of at most `width` characters, broken between words (a longer word is split); later lines start with `indent`. */
export function wrapText(text: string, width: number, indent = ''): string[] {
  const lines: string[] = [];
  let line = '';
  const room = () => width - (lines.length === 0 ? 0 : indent.length);
  for (const word of text.split(/\s+/).filter(Boolean)) {
    let rest = [...word];
    if (line !== '' && [...line].length + 1 + rest.length <= room()) {
      line += ` ${word}`;
      continue;
    }
    if (line !== '') lines.push(line);
    while (rest.length > room()) {
      const n = room();
      lines.push(rest.slice(0, n).join(''));
      rest = rest.slice(n);
    }
    line = rest.join('');
  }
  if (line !== '') lines.push(line);
  return lines.map((l, i) => (i === 0 ? l : indent + l));
}
