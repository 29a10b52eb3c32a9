import fs from 'node:fs';
import path from 'node:path';
import dotenv from 'dotenv';
import { ConfigError } from '../errors';

export interface LoadedEnv {
  /** Merged variables: env files first (later files override earlier ones), the process environment wins. */
  vars: Record<string, string | undefined>;
  /** Where each variable came from, for `config check`. */
  sources: Record<string, string>;
  files: string[];
}

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
