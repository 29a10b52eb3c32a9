import fs from 'node:fs';
import path from 'node:path';

/** DB_HOST values that name this machine: a Unix socket directory or a loopback address. */
function isThisMachine(host: string): boolean {
  return host.startsWith('/') || host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Whether PostgreSQL's data directory (as the newest backup recorded it, when the role could read
 * `data_directory`) is on the same filesystem as a local target's directory, so that the disk
 * projection counts the database's own growth too (issue 21). Only for a server on this machine:
 * a remote server's path means nothing here. False when either cannot be looked at.
 */
export function dataDirSharesDisk(dbHost: string, dataDirectory: string | undefined, targetDir: string): boolean {
  if (dataDirectory === undefined || !isThisMachine(dbHost) || !path.isAbsolute(targetDir)) return false;
  try {
    return fs.statSync(dataDirectory).dev === fs.statSync(targetDir).dev;
  } catch {
    return false;
  }
}
