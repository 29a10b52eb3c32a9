import fs from 'node:fs';
import path from 'node:path';
import type { TargetConfig } from './types';

/**
 * Where a target writes, as one string: two databases of one name must not share it (their
 * backups would be one series). A local path is compared as the file system resolves it:
 * symlinks, `..` and a trailing `/` resolved through its nearest existing ancestor, so a folder
 * not made yet compares too. An S3 target is its endpoint as the URL parser normalises it (any
 * AWS endpoint is AWS: bucket names are global there), bucket and prefix.
 */
export function locationKey(t: TargetConfig): string {
  return t.type === 'local' ? `local:${realPath(t.path)}` : `s3:${endpointKey(t.endpoint)}/${t.bucket}/${t.prefix}`;
}

/** `p` with every symlink resolved, as far as it exists; the rest appended as written. */
export function realPath(p: string): string {
  const rest: string[] = [];
  let dir = path.resolve(p);
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(dir), ...rest.reverse());
    } catch {
      const parent = path.dirname(dir);
      if (parent === dir) return path.resolve(p);
      rest.push(path.basename(dir));
      dir = parent;
    }
  }
}

function endpointKey(endpoint: string | undefined): string {
  if (endpoint === undefined) return 'aws';
  try {
    const u = new URL(endpoint);
    if (/(^|\.)amazonaws\.com$/.test(u.hostname)) return 'aws';
    return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
  } catch {
    return endpoint;
  }
}
