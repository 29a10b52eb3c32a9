import { describe, expect, it } from 'vitest';
import { parseAppName, parseBackupId, parseDatabaseName, parseDateTime, parseKeep, parseLabel, parseTableName, parseTargetName } from '../../src/cli/input';
import { parseConfig } from '../../src/config';
import { ConfigError } from '../../src/errors';
import { printable, shown } from '../../src/util/format';

const NOW = new Date('2026-12-01T10:00:00Z');

/** The ConfigError `fn` throws: exit 2, naming `option`. */
function rejected(fn: () => unknown, option: string): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a ConfigError').toBeInstanceOf(ConfigError);
  const e = caught as ConfigError;
  expect(e.exitCode).toBe(2);
  expect(e.message.startsWith(`${option}: `)).toBe(true);
  expect(e.hint).toMatch(/\S{3}/);
  return e;
}

describe('--keep', () => {
  it.each([
    ['forever', 'forever'],
    ['FOREVER', 'forever'],
    ['30d', '2026-12-31T10:00:00.000Z'],
    ['12h', '2026-12-01T22:00:00.000Z'],
    // months and years are calendar ones, as retention's are: 12m is a year, 100y ends on the same day of 2126
    ['12m', '2027-12-01T10:00:00.000Z'],
    ['1y', '2027-12-01T10:00:00.000Z'],
    ['3m', '2027-03-01T10:00:00.000Z'],
    ['100y', '2126-12-01T10:00:00.000Z'],
    ['1200m', '2126-12-01T10:00:00.000Z'],
    ['2126-12-01T10:00Z', '2126-12-01T10:00:00.000Z'],
    ['2027-02-28', '2027-02-28T00:00:00.000Z'],
    ['2028-02-29', '2028-02-29T00:00:00.000Z'],
    ['2027-01-31T18:00Z', '2027-01-31T18:00:00.000Z'],
    ['2027-01-31T18:00:30+01:00', '2027-01-31T17:00:30.000Z'],
    ['2027-01-31 18:00:30.5-05:30', '2027-01-31T23:30:30.500Z'],
    ['2026-12-01T10:00:01Z', '2026-12-01T10:00:01.000Z'],
  ])('%s -> %s', (text, iso) => {
    expect(parseKeep(text, NOW)).toBe(iso);
  });

  it.each([
    ['99999999y', 'longer than 100 years'],
    ['101y', 'longer than 100 years'],
    ['1201m', 'longer than 100 years'],
    ['36525d', 'longer than 100 years'],
    ['9999-12-31', 'more than 100 years ahead (after 2126-12-01T10:00:00Z)'],
    ['2126-12-01T10:00:01Z', 'more than 100 years ahead'],
    ['999999999999999999999999d', 'longer than 100 years'],
    ['0d', 'would not protect'],
    ['30s', 'unknown unit'],
    ['2027-02-30', '2027-02 has 28 days'],
    ['2028-02-30', '2028-02 has 29 days'],
    ['2027-04-31', '2027-04 has 30 days'],
    ['2027-13-01', 'no month 13'],
    ['2027-00-10', 'no month 00'],
    ['2027-01-00', 'has 31 days'],
    ['2027-01-31T24:00Z', 'not a time of day'],
    ['2027-01-31T23:60Z', 'not a time of day'],
    ['2027-01-31T18:00', 'no time zone'],
    ['2027-01-31T18:00+15:00', 'no time zone offset +15:00'],
    ['2020-01-01', 'in the past (now is 2026-12-01T10:00:00Z)'],
    ['2026-12-01', 'in the past'],
    ['2026-12-01T10:00:00Z', 'in the past'],
    ['a while', 'not a duration or a date'],
    ['27-01-31', 'not a duration or a date'],
    ['2027-1-31', 'not a duration or a date'],
    ['2027-01-31junk', 'not a duration or a date'],
    ['30d\n', 'control character'],
  ])('%j is refused: %s', (text, why) => {
    const e = rejected(() => parseKeep(text, NOW), '--keep');
    expect(e.message).toContain(why);
    expect(e.message).toContain(shown(text));
  });

  it('a month or a year on from the end of a month ends on the last day of the month reached', () => {
    expect(parseKeep('1m', new Date('2027-01-31T18:00:00Z'))).toBe('2027-02-28T18:00:00.000Z');
    expect(parseKeep('1m', new Date('2028-01-31T18:00:00Z'))).toBe('2028-02-29T18:00:00.000Z');
    expect(parseKeep('1y', new Date('2028-02-29T00:00:00Z'))).toBe('2029-02-28T00:00:00.000Z');
    expect(parseKeep('6m', new Date('2026-08-31T12:00:00Z'))).toBe('2027-02-28T12:00:00.000Z');
    expect(parseKeep('30d', new Date('2027-01-31T18:00:00Z'))).toBe('2027-03-02T18:00:00.000Z');
  });

  it('parseDateTime tells a non-date from an impossible one', () => {
    expect(parseDateTime('soon')).toBeUndefined();
    expect(parseDateTime('2027-02-30')).toMatch(/28 days/);
    expect((parseDateTime('2024-02-29') as Date).toISOString()).toBe('2024-02-29T00:00:00.000Z');
  });
});

describe('--label', () => {
  it('is trimmed and kept as given up to 200 characters (multi-byte ones count once)', () => {
    expect(parseLabel('  before migration 42 ')).toBe('before migration 42');
    expect(parseLabel('ü'.repeat(200))).toBe('ü'.repeat(200));
    expect(parseLabel('deploy 🚀 👩‍💻')).toBe('deploy 🚀 👩‍💻');
  });

  it('refuses empty, too long, and multi-line or escape-laden labels, showing a short value', () => {
    expect(rejected(() => parseLabel('   '), '--label').message).toContain('is empty');
    const huge = rejected(() => parseLabel('x'.repeat(10240)), '--label');
    expect(huge.message).toContain('longer than 200 characters');
    expect(huge.message).toContain('(10240 characters)');
    expect(huge.message.length).toBeLessThan(200);
    for (const bad of ['line one\nline two', 'tab\there', 'esc \x1b[2J', 'bidi \u202e x', 'sep \u2028 x']) {
      const e = rejected(() => parseLabel(bad), '--label');
      expect(e.message).toContain('control character');
      for (const c of ['\n', '\t', '\x1b', '\u202e', '\u2028']) expect(e.message).not.toContain(c);
    }
  });
});

describe('database names', () => {
  it('--target-db: at most 63 bytes, a name and not a connection string', () => {
    expect(parseDatabaseName('--target-db', 'x'.repeat(63))).toBe('x'.repeat(63));
    expect(parseDatabaseName('--target-db', 'Webserver DB copy')).toBe('Webserver DB copy');
    const long = rejected(() => parseDatabaseName('--target-db', 'x'.repeat(70)), '--target-db');
    expect(long.message).toContain('is 70 bytes long; PostgreSQL keeps only 63 and would create "' + 'x'.repeat(63) + '"');
    const wide = rejected(() => parseDatabaseName('--target-db', 'ü'.repeat(32)), '--target-db');
    expect(wide.message).toContain(`is 64 bytes long; PostgreSQL keeps only 63 and would create "${'ü'.repeat(31)}"`);
    expect(rejected(() => parseDatabaseName('--target-db', ''), '--target-db').message).toContain('is empty');
    expect(rejected(() => parseDatabaseName('--target-db', 'a\nb'), '--target-db').message).toContain('control character');
    for (const conn of ['host=evil dbname=x', 'postgresql://u@h/db']) {
      expect(rejected(() => parseDatabaseName('--target-db', conn), '--target-db').message).toContain('connection string');
    }
  });

  it('a DB_NAME longer than PostgreSQL keeps is a configuration error', () => {
    let caught: unknown;
    try {
      parseConfig({ DB_NAME: 'd'.repeat(64) }, '/srv/app');
    } catch (err) {
      caught = err;
    }
    expect((caught as ConfigError).message).toMatch(
      /^DB_NAME: the database name "d{60}…" \(64 characters\) is 64 bytes long; PostgreSQL names are at most 63$/,
    );
    expect(() => parseConfig({ DB_NAME: 'd'.repeat(63) }, '/srv/app')).not.toThrow();
  });
});

describe('other free input', () => {
  it('--table: schema.table or table in public, each part a PostgreSQL name', () => {
    expect(parseTableName('users')).toBe('public.users');
    expect(parseTableName('audit.events')).toBe('audit.events');
    expect(parseTableName('a.b.c')).toBe('a.b.c');
    for (const bad of ['', '.users', 'public.', 'x\ny']) rejected(() => parseTableName(bad), '--table');
    expect(rejected(() => parseTableName(`public.${'t'.repeat(64)}`), '--table').message).toContain('64 bytes long');
  });

  it('ids, targets and pm2 apps', () => {
    expect(parseBackupId('latest')).toBe('latest');
    expect(parseBackupId('webserver_db_20260122T020000Z')).toBe('webserver_db_20260122T020000Z');
    rejected(() => parseBackupId(''), 'backup id');
    rejected(() => parseBackupId('x'.repeat(256)), 'backup id');
    rejected(() => parseBackupId('id\x1b[2J'), 'backup id');
    expect(parseTargetName('spaces-1')).toBe('spaces-1');
    expect(rejected(() => parseTargetName('no such'), '--target').message).toContain('is not a storage target name');
    expect(parseAppName('cloudedbasement')).toBe('cloudedbasement');
    expect(parseAppName('0')).toBe('0');
    expect(rejected(() => parseAppName('--help'), '--app').message).toContain('which pm2 would read as an option');
    rejected(() => parseAppName(''), '--app');
  });

  it('values in messages are escaped and shortened', () => {
    expect(shown('a\nb')).toBe('"a\\u000ab"');
    expect(shown('x'.repeat(100), 10)).toBe('"xxxxxxxxxx…" (100 characters)');
    expect(printable('line\u202eevil', 60)).toBe('line\\u202eevil');
  });
});
