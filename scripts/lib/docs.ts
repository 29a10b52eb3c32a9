/**
 * The parts of the documentation generated from the code: the exit codes (from src/errors.ts),
 * the variables (from src/config/variables.ts), the commands (from the command line's own
 * definitions, src/cli/main.ts), the by-hand restore commands (from the pipeline's codecs) and the
 * Prometheus metrics (from src/monitor/metric-list.ts). Each lives in a file between `<!-- NAME:begin -->` and
 * `<!-- NAME:end -->`; `npm run docs` (scripts/docs.ts) rewrites them, and test/unit/docs.test.ts
 * fails when a file differs from what it would write.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command, Option } from 'commander';
import * as prettier from 'prettier';
import { buildProgram } from '../../src/cli/main';
import { VARIABLES, type Variable } from '../../src/config/variables';
import { ERROR_CODES, EXIT_CODE_NOTES, type ErrorCode } from '../../src/errors';
import { METRICS } from '../../src/monitor/metric-list';
import { CODECS } from '../../src/pipeline/codecs';
import { dataFileName, restoreCommand } from '../../src/repository/manifest';

/** A generated section: which file (relative to the repository root), its marker name, its content. */
export interface Section {
  file: string;
  name: string;
  render(file: string): string;
}

/** The exit codes the README shows; docs/exit-codes.md has them all. */
export const README_EXIT_CODES: ErrorCode[] = [
  'CONFIG',
  'LOCKED',
  'DB_AUTH',
  'PRIVILEGE',
  'DUMP_FAILED',
  'NO_SPACE',
  'STORAGE',
  'ABORTED',
  'DAMAGED',
  'GATE_DRILL',
];

/**
 * Where each command is explained beyond its one line (links from the repository root). Every
 * command of the command line needs one: a new command fails `npm run docs` until it has its page.
 */
export const COMMAND_DOCS: Record<string, string> = {
  daemon: '[The daemon under pm2](docs/daemon.md)',
  backup: '[Before a risky operation](README.md#before-a-risky-operation)',
  list: '[status and list](docs/monitoring.md#status-and-list)',
  status: '[status and list](docs/monitoring.md#status-and-list)',
  prune: '[Retention](docs/retention.md)',
  pin: '[Pins](docs/retention.md#pins)',
  unpin: '[Pins](docs/retention.md#pins)',
  restore: '[Restoring](docs/restoring.md)',
  verify: '[Restore drills](docs/restoring.md#restore-drills)',
  sync: '[When a target fails](docs/offsite.md#when-a-target-fails)',
  keygen: '[Encryption](docs/encryption.md#setting-it-up)',
  reencrypt: '[Key rotation](docs/encryption.md#key-rotation)',
  'config check': '[Configuration](docs/configuration.md)',
  'alert test': '[Alerts](docs/monitoring.md#alerts)',
  'wal-push': '[Archiving WAL](docs/pitr.md#archiving-wal)',
  'wal-fetch': '[Recovery](docs/pitr.md#recovery)',
  'wal-prefetch': '[Recovery](docs/pitr.md#recovery)',
  'pitr-restore': '[Recovery](docs/pitr.md#recovery)',
  basebackup: '[Base backups](docs/pitr.md#base-backups)',
  'wal-receive': '[The WAL receiver](docs/pitr.md#the-wal-receiver)',
  'pitr-setup': '[Set-up](docs/pitr.md#set-up)',
};

export const SECTIONS: Section[] = [
  { file: 'docs/exit-codes.md', name: 'exit-codes', render: (file) => exitCodeTable(file) },
  { file: 'README.md', name: 'common-exit-codes', render: (file) => exitCodeTable(file, README_EXIT_CODES) },
  { file: 'README.md', name: 'commands', render: commandList },
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
  { file: 'docs/restoring.md', name: 'by-hand', render: byHandTable },
  { file: 'docs/monitoring.md', name: 'metrics', render: metricTable },
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
 * Sections that moved out of the README or design.md, as links in the code's markdown still name
 * them: each link is written to the section's new place. (When a string in src/ is next changed,
 * point it at the new place and drop its entry here.)
 */
export const MOVED: Record<string, string> = {
  'README.md#database-privileges': 'docs/privileges.md',
  'README.md#several-databases': 'docs/databases.md',
  'README.md#retention': 'docs/retention.md',
  'docs/design.md#retention': 'docs/retention.md#the-clock',
};

/**
 * Links in the code's markdown are relative to the repository root; this makes them relative to
 * `file`, the document they are written into (a section that moved: its new place, see MOVED).
 */
export function rebaseLinks(markdown: string, file: string): string {
  return markdown.replace(/\]\(([^)#:\s]+)(#[^)\s]*)?\)/g, (_all, written: string, writtenAnchor: string | undefined) => {
    const [target, anchor] = splitLink(MOVED[`${written}${writtenAnchor ?? ''}`] ?? `${written}${writtenAnchor ?? ''}`);
    if (path.posix.normalize(target) === path.posix.normalize(file)) return `](${anchor ?? '#'})`;
    return `](${path.posix.relative(path.posix.dirname(file), target)}${anchor ?? ''})`;
  });
}

function splitLink(link: string): [string, string | undefined] {
  const at = link.indexOf('#');
  return at < 0 ? [link, undefined] : [link.slice(0, at), link.slice(at)];
}

/** The exit-code table: every code, or only `codes` (by title, without the notes) and success. */
export function exitCodeTable(file: string, codes?: ErrorCode[]): string {
  const coded = (codes ?? (Object.keys(ERROR_CODES) as ErrorCode[]))
    .map((code) => {
      const { exit, title } = ERROR_CODES[code];
      const note = codes ? undefined : EXIT_CODE_NOTES[code];
      return [exit, `\`${code}\``, note ? `${title}: ${note}` : title] as [number, string, string];
    })
    .concat(codes ? [[0, '', 'done']] : FIXED_EXIT_CODES)
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

/** The Prometheus metrics (src/monitor/metric-list.ts): name, type, labels, meaning. */
export function metricTable(): string {
  return table(
    ['metric', 'type', 'labels', 'meaning'],
    METRICS.map((m) => [`\`${m.name}\``, m.type, m.labels.map((l) => `\`${l}\``).join(', '), m.help]),
  );
}

/** The commands of the command line, each with its full name (`config check`), leaves only. */
export function cliCommands(program: Command = buildProgram()): { name: string; command: Command }[] {
  const out: { name: string; command: Command }[] = [];
  const walk = (c: Command, prefix: string) => {
    for (const sub of c.commands) {
      const name = `${prefix}${sub.name()}`;
      if (sub.commands.length > 0) walk(sub, `${name} `);
      else out.push({ name, command: sub });
    }
  };
  walk(program, '');
  return out;
}

/** The options `--help` shows (not the hidden ones). */
export function shownOptions(c: Command): readonly Option[] {
  return c.options.filter((o) => !o.hidden);
}

/** `backup [--label <text>] [--keep <duration>] …`, as `--help` writes arguments and options. */
function synopsis(name: string, c: Command): string {
  const args = c.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`));
  return [name, ...args, ...shownOptions(c).map((o) => `[${o.flags}]`)].join(' ');
}

/**
 * The README's commands: the global options, then each command with its arguments, options and
 * description, as the command line defines them, and the page that says more (COMMAND_DOCS).
 */
export function commandList(file: string): string {
  const program = buildProgram();
  const commands = cliCommands(program);
  const undocumented = commands.filter((c) => COMMAND_DOCS[c.name] === undefined).map((c) => c.name);
  const unknown = Object.keys(COMMAND_DOCS).filter((name) => !commands.some((c) => c.name === name));
  if (undocumented.length > 0 || unknown.length > 0) {
    throw new Error(
      `COMMAND_DOCS in scripts/lib/docs.ts ${undocumented.length > 0 ? `lacks ${undocumented.join(', ')}` : ''}${undocumented.length > 0 && unknown.length > 0 ? ' and ' : ''}${unknown.length > 0 ? `names no command ${unknown.join(', ')}` : ''}: give every command the page that explains it`,
    );
  }
  const global = shownOptions(program).map((o) => `\`${o.flags}\`: ${o.description}`);
  const lines = [
    `Before the command: ${global.join('; ')}.`,
    '',
    ...commands.map(({ name, command }) => `- \`${synopsis(name, command)}\`: ${command.description()}; see ${COMMAND_DOCS[name]!}.`),
  ];
  return rebaseLinks(lines.join('\n'), file);
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

/**
 * Every name a data file can have (format × the pipeline's compression codecs or none × encrypted
 * or not) and the restore_command its manifest records: made from the codecs' list, so a new codec
 * appears here with its by-hand command.
 */
export function byHandTable(): string {
  const compressions = ['none', ...CODECS.filter((c) => c.role === 'compression').map((c) => c.name)];
  const rows: string[] = ["| the data file ends in | its manifest's `restore_command` |", '| --- | --- |'];
  for (const format of ['custom', 'plain'] as const)
    for (const compression of compressions)
      for (const encrypted of [false, true]) {
        const file = dataFileName('ID', format, encrypted, compression);
        // a | inside a table cell, even in code, is written \\| (GitHub shows it as |)
        rows.push(`| \`${file.slice('ID'.length)}\` | \`${restoreCommand(file, format).replaceAll('|', '\\|')}\` |`);
      }
  return rows.join('\n');
}
