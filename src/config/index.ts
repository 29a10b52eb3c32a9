/**
 * The configuration's public face: load it (env files, the environment, BACKUP_CONFIG_FILE),
 * pick one database's entry, describe it for `config check`. Its types are in types.ts, the
 * variables it reads in variables.ts, each section's parser in sections/.
 */
import { redact } from '../redact';
import { loadEnv } from './env-files';
import { parseConfig } from './parse';
import type { ConfigOptions, LoadedConfig } from './types';
import { VARIABLES } from './variables';

export { forDatabase } from './databases';
export { parseConfig } from './parse';
export { parseAlertConfig, parseStartAlerts } from './sections/alerts';
export { VARIABLES, type Variable } from './variables';

/**
 * Loads env files and the process environment, then validates. Also the one place that sets a
 * variable a library reads from our own environment: the AWS SDK warns on every run that its
 * releases after January 2027 will need Node 22; the version in package-lock.json runs on Node 20,
 * and the warning is noise in cron and pm2 logs.
 */
export function loadConfig(envFiles: string[] = [], processEnv: NodeJS.ProcessEnv = process.env, cwd = process.cwd(), opts: ConfigOptions = {}): LoadedConfig {
  processEnv.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const env = loadEnv(envFiles, processEnv, cwd);
  return { config: parseConfig(env.vars, cwd, processEnv, opts), env };
}

/** The effective configuration as rows for `config check`, secrets redacted. */
export function describeConfig(loaded: LoadedConfig): { variable: string; value: string; source: string }[] {
  const { env } = loaded;
  return VARIABLES.filter((v) => !v.environmentOnly).map((v) => {
    const raw = env.vars[v.name];
    const set = raw !== undefined && raw.trim() !== '';
    let value: string;
    if (!set) value = v.default ? `${v.default}` : '(not set)';
    else if (v.secret) value = v.name === 'DATABASE_URL' ? redact(raw) : '***';
    else value = raw;
    return { variable: v.name, value, source: set ? (env.sources[v.name] ?? 'environment') : 'default' };
  });
}
