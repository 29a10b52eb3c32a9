import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The commands handed to others (restore_command, the prefetcher) name this program's entry point,
// not process.argv[1]: under pm2 that is pm2's ProcessContainerFork.js.
describe('selfScript', () => {
  it('is the built CLI, whatever process.argv[1] is', async () => {
    const built = path.resolve(__dirname, '..', '..', 'dist', 'src', 'util', 'self.js');
    const saved = process.argv[1];
    process.argv[1] = '/usr/lib/node_modules/pm2/lib/ProcessContainerFork.js';
    try {
      const { selfScript } = (await import(built)) as { selfScript: () => string };
      const script = selfScript();
      expect(script).toBe(path.resolve(__dirname, '..', '..', 'dist', 'src', 'cli', 'main.js'));
      expect(fs.existsSync(script)).toBe(true);
      // the recovered server's restore_command runs it
      const { walFetchCommand } = (await import(path.resolve(__dirname, '..', '..', 'dist', 'src', 'pitr', 'recover.js'))) as {
        walFetchCommand: (app: unknown, req: { envFiles: string[]; cwd: string; pgdata: string }) => string;
      };
      const command = walFetchCommand({ database: { name: 'shop' } }, { envFiles: ['/srv/app/.env'], cwd: '/srv/app', pgdata: '/tmp/recovered' });
      expect(command).toContain(`${script} --env-file /srv/app/.env --db shop wal-fetch`);
      expect(command).not.toContain('ProcessContainerFork');
    } finally {
      process.argv[1] = saved!;
    }
  });
});
