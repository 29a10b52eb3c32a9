/**
 * The configuration files a base backup may lack. Debian's packaged PostgreSQL keeps
 * postgresql.conf, pg_hba.conf and pg_ident.conf in /etc/postgresql/VERSION/CLUSTER, outside the
 * data directory, so pg_basebackup does not copy them; a recovered copy without them does not
 * start ("could not access the server configuration file"). Minimal ones are written in their
 * place: the settings recovery needs are in postgresql.auto.conf, and the server accepts only
 * local connections and password logins from this machine.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

const FILES: Record<string, string> = {
  'postgresql.conf': [
    '# written by basement-backup pitr-restore: the backed-up server keeps its postgresql.conf outside',
    '# its data directory (Debian: /etc/postgresql/VERSION/CLUSTER/). The recovery settings are in',
    '# postgresql.auto.conf; copy what else this copy needs from the original.',
    "listen_addresses = 'localhost'",
    '',
  ].join('\n'),
  'pg_hba.conf': [
    '# written by basement-backup pitr-restore (the original is outside the data directory)',
    'local   all   all                  peer',
    'host    all   all   127.0.0.1/32   scram-sha-256',
    'host    all   all   ::1/128        scram-sha-256',
    '',
  ].join('\n'),
  'pg_ident.conf': '# written by basement-backup pitr-restore (the original is outside the data directory)\n',
};

/** Writes each of the files `pgdata` lacks (0600); returns their names. */
export async function completeConfigFiles(pgdata: string): Promise<string[]> {
  const written: string[] = [];
  for (const [name, text] of Object.entries(FILES)) {
    const file = path.join(pgdata, name);
    if (fs.existsSync(file)) continue;
    await fsp.writeFile(file, text, { mode: 0o600, flag: 'wx' });
    written.push(name);
  }
  return written;
}
