import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VARIABLES } from '../../src/config';
import { ERROR_CODES } from '../../src/errors';
import { GENERATED_FILES, regenerate, replaceSection } from '../../scripts/lib/docs';

const ROOT = path.resolve(__dirname, '../..');

/** Every markdown file of the documentation, relative to the root. */
function documents(): string[] {
  const docs = fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`);
  return ['README.md', 'CONTRIBUTING.md', ...docs];
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

function anchors(text: string): Set<string> {
  return new Set([...prose(text).matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)));
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
      `${file} differs from what src/errors.ts (ERROR_CODES, EXIT_CODE_NOTES) and src/config/index.ts (VARIABLES) say: run \`npm run docs\``,
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
    expect(unknown, `${file} names settings that are not in VARIABLES (src/config/index.ts)`).toEqual([]);
  });

  it.each(documents())('the links of %s lead to files and headings that exist', (file) => {
    const broken: string[] = [];
    for (const m of prose(read(file)).matchAll(/\]\(([^)\s]+)\)/g)) {
      const link = m[1]!;
      if (/^[a-z]+:/.test(link)) continue;
      const [target, anchor] = link.split('#') as [string, string | undefined];
      const targetFile = target === '' ? file : path.posix.join(path.posix.dirname(file), target);
      if (!fs.existsSync(path.join(ROOT, targetFile))) broken.push(`${link} (no file ${targetFile})`);
      else if (anchor !== undefined && targetFile.endsWith('.md') && !anchors(read(targetFile)).has(anchor)) broken.push(`${link} (no heading #${anchor})`);
    }
    expect(broken, `${file} has broken links`).toEqual([]);
  });

  it('replaceSection needs both markers and keeps what is around them', () => {
    expect(replaceSection('a\n<!-- x:begin -->\nold\n<!-- x:end -->\nb\n', 'x', 'new')).toBe('a\n<!-- x:begin -->\n\nnew\n\n<!-- x:end -->\nb\n');
    expect(() => replaceSection('a\n<!-- x:end -->\n', 'x', 'new')).toThrow(/markers <!-- x:begin -->/);
  });
});
