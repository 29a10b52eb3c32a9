/**
 * This program's entry point, for the commands it hands to others (the recovered server's
 * restore_command, the background prefetcher). Not `process.argv[1]`: under pm2 that is pm2's
 * ProcessContainerFork.js, and a restore_command running it would fail every WAL fetch.
 */
import path from 'node:path';

export function selfScript(): string {
  // this file is src/util/self.ts, built to dist/src/util/self.js; the CLI is dist/src/cli/main.js
  return path.resolve(__dirname, '..', 'cli', 'main.js');
}
