import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseConfig, VARIABLES } from '../../src/config';
import type { Configuration, S3TargetConfig } from '../../src/config/types';
import { ERROR_CODES } from '../../src/errors';
import { cliCommands, GENERATED_FILES, regenerate, replaceSection, shownOptions } from '../../scripts/lib/docs';
import { buildProgram } from '../../src/cli/main';

const ROOT = path.resolve(__dirname, '../..');

/** The pages of docs/, relative to the root. */
function docsPages(): string[] {
  return fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`);
}

/** Every markdown file of the documentation, relative to the root. */
function documents(): string[] {
  return ['README.md', 'CONTRIBUTING.md', 'bench/README.md', ...docsPages()];
}

function read(file: string): string {
  return fs.readFileSync(path.join(ROOT, file), 'utf8');
}

/** The text outside fenced code blocks. */
function prose(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '');
}

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a page's headings, as GitHub makes them (a repeated heading gets `-1`, `-2`, …). */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(text).matchAll(/^#{1,6} (.+)$/gm)) {
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative links of a page, inline (`[text](target)`) and reference-style (`[name]: target`). */
function relativeLinks(text: string): string[] {
  const body = prose(text);
  const links = [...body.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g), ...body.matchAll(/^\s*\[[^\]]+\]:\s+(\S+)/gm)].map((m) => m[1]!);
  return links.filter((link) => !/^[a-z][a-z+.-]*:/.test(link));
}

/** Where `link`, written in `file`, leads; undefined when it does (file and heading exist). */
function brokenLink(file: string, link: string): string | undefined {
  const [target, anchor] = link.split('#') as [string, string | undefined];
  const targetFile = target === '' ? file : path.posix.normalize(path.posix.join(path.posix.dirname(file), target));
  if (targetFile.startsWith('..') || !fs.existsSync(path.join(ROOT, targetFile))) return `${link} (no file ${targetFile})`;
  if (anchor !== undefined && targetFile.endsWith('.md') && !anchors(read(targetFile)).has(anchor)) return `${link} (no heading #${anchor} in ${targetFile})`;
  return undefined;
}

/** The text between a generated section's markers. */
function section(text: string, name: string): string {
  const from = text.indexOf(`<!-- ${name}:begin -->`);
  const to = text.indexOf(`<!-- ${name}:end -->`);
  if (from < 0 || to < from) throw new Error(`no section ${name}`);
  return text.slice(from, to);
}

/** The TypeScript files under `dir`, recursively. */
function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

const EXIT_CODES = new Set([0, 1, ...Object.values(ERROR_CODES).map((c) => c.exit)]);
const VARIABLE_NAMES = new Set(VARIABLES.map((v) => v.name));
/** Names that look like settings and are not: error codes, and pm2's own PM2_HOME. */
const NOT_SETTINGS = new Set([...Object.keys(ERROR_CODES), 'PM2_HOME']);
/** What looks like one of basement-backup's settings. */
const SETTING = /\b(?:DATABASE|DB|BACKUP|S3|SMTP|ALERT|VERIFY|LOG|PG_BIN|PM2|SHUTDOWN)_[A-Z0-9_]*[A-Z0-9]\b/g;

describe('documentation agrees with the code', () => {
  it.each(GENERATED_FILES)('the generated sections of %s are up to date', async (file) => {
    const expected = await regenerate(ROOT, file);
    expect(
      read(file),
      `${file} differs from what src/errors.ts (ERROR_CODES, EXIT_CODE_NOTES), src/config/variables.ts (VARIABLES) and the command line (buildProgram) say: run \`npm run docs\``,
    ).toBe(expected);
  });

  it.each(documents())('%s mentions only exit codes that exist', (file) => {
    const mentioned = [...read(file).matchAll(/\bexit(?: code| status)?s? (\d+)\b/gi)].map((m) => Number(m[1]));
    expect(
      mentioned.filter((n) => !EXIT_CODES.has(n)),
      `${file} names exit codes that are not in src/errors.ts`,
    ).toEqual([]);
  });

  it.each(documents())('%s mentions only variables basement-backup reads', (file) => {
    const unknown = [...new Set(read(file).match(SETTING) ?? [])].filter((name) => !VARIABLE_NAMES.has(name) && !NOT_SETTINGS.has(name));
    expect(unknown, `${file} names settings that are not in VARIABLES (src/config/variables.ts)`).toEqual([]);
  });

  it.each(documents())('the tests %s names (`test/….ts` › title) are in the files it names', (file) => {
    const missing: string[] = [];
    for (const m of read(file).matchAll(/`(test\/[^`]+\.ts)` › (.+?)(?=\s*(?:\||;\s*`test\/|$))/gm)) {
      const [, testFile, title] = m as unknown as [string, string, string];
      const where = path.join(ROOT, testFile);
      if (!fs.existsSync(where) || !fs.readFileSync(where, 'utf8').includes(title.trim())) missing.push(`${testFile} › ${title.trim()}`);
    }
    expect(missing, `${file} points at tests that are not where it says`).toEqual([]);
  });

  it.each(documents())('every relative link of %s leads to a file and heading that exist', (file) => {
    const broken = relativeLinks(read(file)).flatMap((link) => brokenLink(file, link) ?? []);
    expect(broken, `${file} has broken links`).toEqual([]);
  });

  it('the link check sees inline and reference links, anchors of repeated headings, and broken ones', () => {
    const page =
      '# A\n\n## Same\n\n## Same\n\nSee [x](#same-1) and [y](docs/nowhere.md).\n\n[ref]: README.md#no-such-heading\n\n```\n[in code](nowhere.md)\n```\n';
    expect(relativeLinks(page)).toEqual(['#same-1', 'docs/nowhere.md', 'README.md#no-such-heading']);
    expect([...anchors(page)]).toEqual(['a', 'same', 'same-1']);
    expect(brokenLink('README.md', 'docs/nowhere.md')).toMatch(/no file docs\/nowhere.md/);
    expect(brokenLink('README.md', 'README.md#no-such-heading')).toMatch(/no heading/);
    expect(brokenLink('docs/retention.md', '../README.md#quick-start')).toBeUndefined();
  });

  it('the README stays short: at most 25 KB', () => {
    const size = Buffer.byteLength(read('README.md'));
    expect(size, 'README.md is for the first hour: move details to a page in docs/ (see CONTRIBUTING, Documentation)').toBeLessThanOrEqual(25 * 1024);
  });

  it('docs/README.md maps every page of docs/, the benchmarks and CONTRIBUTING; the README links the map', () => {
    const mapped = new Set(relativeLinks(read('docs/README.md')).map((link) => path.posix.normalize(path.posix.join('docs', link.split('#')[0]!))));
    const pages = [...docsPages().filter((p) => p !== 'docs/README.md'), 'bench/README.md', 'CONTRIBUTING.md'];
    expect(
      pages.filter((p) => !mapped.has(p)),
      'pages missing from the map in docs/README.md',
    ).toEqual([]);
    expect(relativeLinks(read('README.md'))).toContain('docs/README.md');
  });

  it("the README's commands are the command line's: every command and option, and no other", () => {
    const program = buildProgram();
    const listed = section(read('README.md'), 'commands');
    const globalLine = listed.split('\n').find((l) => l.startsWith('Before the command:')) ?? '';
    const optionsIn = (text: string) => [...new Set(text.match(/--[a-z][a-z-]*/g) ?? [])].sort();
    const optionsOf = (c: Command) =>
      shownOptions(c)
        .map((o) => o.long!)
        .sort();
    expect(optionsIn(globalLine), 'the global options').toEqual(optionsOf(program));
    const readme = new Map<string, string[]>();
    for (const m of listed.matchAll(/^- `([^`]+)`/gm)) readme.set(/^[a-z-]+(?: [a-z-]+)*/.exec(m[1]!)![0], optionsIn(m[1]!));
    const cli = new Map(cliCommands(program).map(({ name, command }) => [name, optionsOf(command)]));
    expect([...readme.keys()].sort(), 'the commands of the README and of buildProgram() (src/cli/main.ts)').toEqual([...cli.keys()].sort());
    for (const [name, options] of cli) expect(readme.get(name), `the options of ${name} in the README and in src/cli/commands/`).toEqual(options);
  });

  it('the hints in src/ send the reader to README sections and docs/ pages that exist', () => {
    const readme = anchors(read('README.md'));
    const missing: string[] = [];
    for (const file of sources(path.join(ROOT, 'src'))) {
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\(README: ([A-Z][A-Za-z ]*[a-z])\)/g))
        if (!readme.has(slug(m[1]!))) missing.push(`${path.relative(ROOT, file)}: README: ${m[1]}`);
      for (const m of text.matchAll(/\b(docs\/[a-z-]+\.md)\b/g))
        if (!fs.existsSync(path.join(ROOT, m[1]!))) missing.push(`${path.relative(ROOT, file)}: ${m[1]}`);
    }
    expect(missing, 'sections and pages named in messages').toEqual([]);
  });

  it('the defaults the reference shows are the ones the loader applies', () => {
    const cwd = '/srv/bb';
    const c = parseConfig({ DB_NAME: 'db', S3_BUCKET: 'b', S3_ACCESS_KEY_ID: 'k', S3_SECRET_ACCESS_KEY: 's' }, cwd);
    const mail = { DB_NAME: 'db', SMTP_HOST: 'mail', ALERT_EMAIL_TO: 'ops@example.com' };
    const smtp = parseConfig(mail, cwd).alert.smtp!;
    const smtpSecure = parseConfig({ ...mail, SMTP_SECURE: 'true' }, cwd).alert.smtp!;
    const d = c.databases[0]!;
    const s3 = d.targets.find((t): t is S3TargetConfig => t.type === 's3')!;
    const local = d.targets.find((t) => t.type === 'local');
    const rel = (dir: string) => `./${path.relative(cwd, dir)}`;
    /** What the loader does when the variable is not set, written as the reference writes it. */
    const applied: Record<string, (c: Configuration) => string> = {
      DB_HOST: () => d.db.host,
      DB_PORT: () => String(d.db.port),
      DB_CONNECT_TIMEOUT_SECONDS: () => String(d.db.connectTimeoutSeconds),
      BACKUP_DIR: (c) => rel(c.backupDir),
      BACKUP_LOCAL: () => String(local !== undefined),
      BACKUP_STATE_DIR: (c) => c.stateDir.replace(c.backupDir, '<BACKUP_DIR>'),
      S3_ENDPOINT: () => s3.endpoint ?? 'AWS',
      S3_REGION: () => s3.region,
      S3_PREFIX: () => (s3.prefix === '' ? '(bucket root)' : s3.prefix),
      S3_FORCE_PATH_STYLE: () => String(s3.forcePathStyle),
      S3_PART_SIZE_MB: () => String(s3.partSizeBytes / 1024 / 1024),
      S3_TIMEOUT_SECONDS: () => String(s3.timeoutSeconds),
      S3_RETENTION_DAYS: () => (s3.retention.days === local!.retention.days ? 'BACKUP_RETENTION_DAYS' : String(s3.retention.days)),
      S3_OBJECT_LOCK: () => s3.objectLock?.mode ?? 'off',
      S3_DELETE: () => String(!s3.appendOnly),
      S3_RETENTION_MIN_COUNT: () => (s3.retention.minCount === local!.retention.minCount ? 'BACKUP_RETENTION_MIN_COUNT' : String(s3.retention.minCount)),
      BACKUP_SCHEDULE: () => d.schedule,
      BACKUP_TIMEZONE: (c) => c.timezone,
      BACKUP_CATCH_UP: (c) => String(c.catchUp),
      BACKUP_FORMAT: () => d.format,
      BACKUP_TEMP_DIR: (c) => (c.tempDir === os.tmpdir() ? '`$TMPDIR` or `/tmp`' : c.tempDir),
      BACKUP_RESTORE_JOBS: (c) => (c.restoreJobs === undefined ? '`auto`' : String(c.restoreJobs)),
      BACKUP_RETENTION_DAYS: () => String(local!.retention.days),
      BACKUP_MAX_PARALLEL: (c) => String(c.maxParallel),
      WAL_PUSH_TIMEOUT_SECONDS: (c) => String(c.pitr.pushTimeoutMs / 1000),
      WAL_REQUIRED_TARGETS: (c) => (c.pitr.requiredTargets === undefined ? 'all' : c.pitr.requiredTargets.join(',')),
      BASEBACKUP_WAL_WAIT_SECONDS: (c) => String(c.pitr.baseWalWaitMs / 1000),
      WAL_RECEIVE: (c) => (c.pitr.receive ? 'on' : 'off'),
      WAL_SLOT_NAME: (c) => c.pitr.slotName,
      BASEBACKUP_SCHEDULE: (c) => c.pitr.baseSchedule ?? 'off',
      WAL_MAX_LAG_MINUTES: (c) => (c.pitr.maxLagMs === undefined ? 'off' : String(c.pitr.maxLagMs / 60_000)),
      WAL_QUEUE_MAX_MB: (c) => (c.pitr.queueMaxBytes === undefined ? 'off' : String(c.pitr.queueMaxBytes / 1024 / 1024)),
      PITR_VERIFY_SCHEDULE: (c) => c.pitr.drillSchedule ?? 'off',
      BACKUP_KEEP_DAILY: () => String(local!.retention.daily),
      BACKUP_KEEP_WEEKLY: () => String(local!.retention.weekly),
      BACKUP_KEEP_MONTHLY: () => String(local!.retention.monthly),
      BACKUP_KEEP_YEARLY: () => String(local!.retention.yearly),
      BACKUP_RETENTION_MIN_COUNT: () => String(local!.retention.minCount),
      BACKUP_MIN_FREE_MB: (c) => String(c.minFreeBytes / 1024 / 1024),
      BACKUP_DIGEST: () => d.digest,
      BACKUP_STALL_MINUTES: (c) => String(c.stallMs / 60_000),
      VERIFY_SCHEDULE: () => d.verifySchedule ?? 'off',
      VERIFY_TARGETS: () => d.verifyTargets,
      VERIFY_DB_HOST: () => (d.verifyDb.host === d.db.host ? 'DB_HOST' : d.verifyDb.host),
      VERIFY_DB_PORT: () => (d.verifyDb.port === d.db.port ? 'DB_PORT' : String(d.verifyDb.port)),
      VERIFY_DB_USER: () => (d.verifyDb.user === d.db.user ? 'DB_USER' : d.verifyDb.user),
      VERIFY_DB_PASSWORD: () => (d.verifyDb.password === d.db.password ? 'DB_PASSWORD' : '?'),
      SMTP_PORT: () => `${smtp.port} (${smtpSecure.port} when SMTP_SECURE=true)`,
      SMTP_SECURE: () => String(smtp.secure),
      ALERT_EMAIL_FROM: (c) => c.alert.from.replace(os.hostname(), '<hostname>'),
      ALERT_REPEAT_MINUTES: (c) => String(c.alert.repeatMinutes),
      BACKUP_PING_TIMEOUT_SECONDS: (c) => String(c.notify.timeoutMs / 1000),
      BACKUP_CHECK_MINUTES: (c) => String(c.monitor.checkIntervalMs / 60_000),
      BACKUP_ALERT_AFTER_FAILURES: (c) => String(c.monitor.alertAfterFailures),
      BACKUP_SIZE_ALERT_RATIO: (c) => String(c.monitor.sizeAlertRatio),
      BACKUP_DISK_ALERT_DAYS: (c) => String(c.monitor.diskAlertDays),
      BACKUP_HTTP_HOST: () => parseConfig({ DB_NAME: 'db', BACKUP_HTTP_PORT: '9187' }, cwd).monitor.http!.host,
      BACKUP_HTTP_BUSY_RATE: () => String(parseConfig({ DB_NAME: 'db', BACKUP_HTTP_PORT: '9187' }, cwd).monitor.http!.busyRate),
      BACKUP_SUMMARY_SCHEDULE: (c) => c.monitor.summarySchedule ?? 'off',
      LOG_DIR: (c) => rel(c.logDir),
      LOG_LEVEL: (c) => c.logLevel,
      LOG_MAX_SIZE_MB: (c) => String(c.logMaxBytes / 1024 / 1024),
      LOG_MAX_FILES: (c) => String(c.logMaxFiles),
      SHUTDOWN_GRACE_SECONDS: (c) => String(c.shutdownGraceSeconds),
      PM2_BIN: (c) => `${c.pm2Bin} (on PATH)`,
    };
    /**
     * Defaults decided outside parseConfig: BACKUP_AGE_PROGRAM by findAgeProgram (test/unit/age.test.ts),
     * BACKUP_COMPRESSION and BACKUP_ZSTD_PROGRAM by chooseCompressor and findZstd (test/unit/compression.test.ts),
     * BACKUP_MAX_AGE_HOURS by maxAgeMs from the schedule (test/unit/monitor-findings.test.ts).
     */
    const elsewhere = ['PG_BIN_DIR', 'BACKUP_MAX_AGE_HOURS', 'BACKUP_ENV_FILE', 'BACKUP_AGE_PROGRAM', 'BACKUP_COMPRESSION', 'BACKUP_ZSTD_PROGRAM'];
    for (const v of VARIABLES.filter((x) => x.default !== undefined && !elsewhere.includes(x.name))) {
      expect(applied[v.name], `${v.name} has a default in VARIABLES: add how the loader applies it to this test`).toBeDefined();
      expect(applied[v.name]!(c), `the default of ${v.name} in VARIABLES (src/config/variables.ts)`).toBe(v.default);
    }
  });

  it('replaceSection needs both markers and keeps what is around them', () => {
    expect(replaceSection('a\n<!-- x:begin -->\nold\n<!-- x:end -->\nb\n', 'x', 'new')).toBe('a\n<!-- x:begin -->\n\nnew\n\n<!-- x:end -->\nb\n');
    expect(() => replaceSection('a\n<!-- x:end -->\n', 'x', 'new')).toThrow(/markers <!-- x:begin -->/);
  });
});
