/**
 * The parts of the documentation generated from the code: the exit-code table (from
 * src/errors.ts) and the variables reference (from src/config/index.ts). Each lives in a file
 * between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; `npm run docs` (scripts/docs.ts)
 * rewrites them, and test/unit/docs.test.ts fails when a file differs from what it would write.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as prettier from 'prettier';
import { VARIABLES, type Variable } from '../../src/config';
import { ERROR_CODES, EXIT_CODE_NOTES, type ErrorCode } from '../../src/errors';

/** A generated section: which file (relative to the repository root), its marker name, its content. */
export interface Section {
  file: string;
  name: string;
  render(file: string): string;
}

export const SECTIONS: Section[] = [
  { file: 'README.md', name: 'exit-codes', render: exitCodeTable },
  {
    file: 'README.md',
    name: 'common-variables',
    render: (file) =>
      variableTable(
        file,
        VARIABLES.filter((v) => v.common),
      ),
  },
  { file: 'docs/configuration.md', name: 'variables', render: (file) => variableTable(file, VARIABLES) },
];

/** The files that hold generated sections. */
export const GENERATED_FILES = [...new Set(SECTIONS.map((s) => s.file))];

/** Exit codes the command line has without an error code behind them. */
const FIXED_EXIT_CODES: [number, string, string][] = [
  [0, '', 'done; `backup`: the backup is complete and checked on at least one target (a failed target or retention is alerted)'],
  [1, '', "the command line could not be parsed (an unknown command or option): the parser's message and the help"],
];

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function row(cells: string[]): string {
  return `| ${cells.map(cell).join(' | ')} |`;
}

function table(head: string[], rows: string[][]): string {
  return [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n');
}

/**
 * Links in the code's markdown are relative to the repository root; this makes them relative to
 * `file`, the document they are written into.
 */
export function rebaseLinks(markdown: string, file: string): string {
  return markdown.replace(/\]\(([^)#:\s]+)(#[^)\s]*)?\)/g, (_all, target: string, anchor: string | undefined) => {
    if (path.posix.normalize(target) === path.posix.normalize(file)) return `](${anchor ?? '#'})`;
    return `](${path.posix.relative(path.posix.dirname(file), target)}${anchor ?? ''})`;
  });
}

export function exitCodeTable(file: string): string {
  const coded = (Object.keys(ERROR_CODES) as ErrorCode[])
    .map((code) => {
      const { exit, title } = ERROR_CODES[code];
      const note = EXIT_CODE_NOTES[code];
      return [exit, `\`${code}\``, note ? `${title}: ${note}` : title] as [number, string, string];
    })
    .concat(FIXED_EXIT_CODES)
    .sort((a, b) => a[0] - b[0]);
  return rebaseLinks(
    table(
      ['exit', 'code', 'meaning'],
      coded.map(([exit, code, meaning]) => [String(exit), code, meaning]),
    ),
    file,
  );
}

const VARIABLE_NAMES = new Set(VARIABLES.map((v) => v.name));

/** A default as the reference shows it: a literal value as code, a description as text. */
function shownDefault(v: Variable): string {
  const d = v.default;
  if (d === undefined) return '';
  if (VARIABLE_NAMES.has(d)) return `as \`${d}\``;
  // a description, or a default already written with its code in backticks
  if (/[(`']|\s(on|or|under)\s/.test(d)) return d;
  return `\`${d}\``;
}

export function variableTable(file: string, variables: Variable[]): string {
  return rebaseLinks(
    table(
      ['variable', 'default', 'meaning'],
      variables.map((v) => [`\`${v.name}\``, shownDefault(v), v.secret ? `${v.meaning} (secret: masked in logs, mails and \`config check\`)` : v.meaning]),
    ),
    file,
  );
}

/** `text` with the section `name` replaced by `content`; throws when its markers are missing. */
export function replaceSection(text: string, name: string, content: string): string {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`the markers ${begin} … ${end} are missing: put them where the section belongs, then run \`npm run docs\``);
  return `${text.slice(0, from + begin.length)}\n\n${content}\n\n${text.slice(to)}`;
}

/** What `file` (relative to `root`) should contain: its generated sections renewed, formatted by prettier. */
export async function regenerate(root: string, file: string): Promise<string> {
  const full = path.join(root, file);
  let text = fs.readFileSync(full, 'utf8');
  for (const s of SECTIONS.filter((x) => x.file === file)) {
    try {
      text = replaceSection(text, s.name, s.render(file));
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
  }
  const options = (await prettier.resolveConfig(full)) ?? {};
  return prettier.format(text, { ...options, filepath: full });
}
