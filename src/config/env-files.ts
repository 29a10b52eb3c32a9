import fs from 'node:fs';
import path from 'node:path';
import dotenv from 'dotenv';
import { ConfigError } from '../errors';
import type { LoadedEnv, ValueSource } from './types';

/**
 * Reads the env files named by `--env-file` (repeatable) or BACKUP_ENV_FILE (comma list),
 * or ./.env when it exists. A file that was named but cannot be read is a configuration error.
 */
export function loadEnv(explicitFiles: string[], processEnv: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): LoadedEnv {
  let files = explicitFiles;
  let variable = '--env-file';
  if (files.length === 0 && processEnv.BACKUP_ENV_FILE) {
    files = processEnv.BACKUP_ENV_FILE.split(',')
      .map((f) => f.trim())
      .filter(Boolean);
    variable = 'BACKUP_ENV_FILE';
  }
  let optional = false;
  if (files.length === 0) {
    files = ['.env'];
    optional = true;
  }
  const vars: Record<string, string | undefined> = {};
  const sources: Record<string, string> = {};
  const used: string[] = [];
  for (const f of files) {
    const abs = path.resolve(cwd, f);
    let text: string;
    try {
      text = fs.readFileSync(abs, 'utf8');
    } catch (err) {
      if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      const reason = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new ConfigError(variable, `cannot read env file ${abs} (${reason})`, 'Check the path and that this user can read the file.');
    }
    used.push(abs);
    const parsed = dotenv.parse(text);
    for (const [k, v] of Object.entries(parsed)) {
      vars[k] = v;
      sources[k] = abs;
    }
  }
  for (const [k, v] of Object.entries(processEnv)) {
    if (v === undefined) continue;
    vars[k] = v;
    sources[k] = 'environment';
  }
  return { vars, sources, files: used };
}

const SECRET_NAME = /PASS|SECRET|KEY|TOKEN/i;

/**
 * Finds which variable of `env` holds `value` (trying `preferred` first, then secret-looking
 * names) and how a shell can read it from its env file: a `sed` line, only when that prints
 * exactly what dotenv read (an unquoted or simply quoted value on a `NAME=` line).
 */
export function valueSource(env: LoadedEnv, value: string, preferred: string[]): ValueSource {
  const names = [...preferred, ...Object.keys(env.vars).filter((n) => SECRET_NAME.test(n) && !preferred.includes(n))];
  const variable = names.find((n) => env.vars[n]?.trim() === value);
  if (!variable) return { variable: undefined, file: undefined, reader: undefined };
  const source = env.sources[variable];
  const file = source === undefined || source === 'environment' ? undefined : source;
  return { variable, file, reader: file ? shellReader(file, variable, env.vars[variable]!) : undefined };
}

function shellReader(file: string, name: string, value: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const last = text
    .split('\n')
    .filter((l) => l.startsWith(`${name}=`))
    .at(-1);
  if (last === undefined || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return undefined;
  const raw = last.slice(name.length + 1);
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  let script: string | undefined;
  if (raw === value && !raw.includes('#')) script = `s/^${name}=//p`;
  else if (raw === `'${value}'`) script = `s/^${name}='\\(.*\\)'$/\\1/p`;
  else if (raw === `"${value}"` && !/[\\"]/.test(value)) script = `s/^${name}="\\(.*\\)"$/\\1/p`;
  return script && `sed -n ${q(script)} ${q(file)} | tail -n 1`;
}
