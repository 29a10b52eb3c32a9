/**
 * The least a Node command adds to pg_basebackup (bench/pitr.ts, pn): Node starts, starts
 * pg_basebackup at once (`--compress=client-zstd:level=L,workers=W`, as `basebackup` does), and
 * stores its output as `basebackup` stores it, no more: a sha256 of every byte, written to one
 * file, fsynced. No configuration, lock, server check, record or log. Usage: node node-floor.js
 * PG_BASEBACKUP FILE LEVEL WORKERS (the connection in the libpq environment).
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';

async function main(): Promise<void> {
  const [pgbb, file, level, workers] = process.argv.slice(2) as [string, string, string, string];
  const child = spawn(
    pgbb,
    ['-D', '-', '-Ft', '-X', 'none', '--checkpoint=fast', '--no-password', `--compress=client-zstd:level=${level},workers=${workers}`],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const fh = await fsp.open(file, 'w', 0o600);
  const out = fh.createWriteStream({ highWaterMark: 1024 * 1024 });
  const hash = crypto.createHash('sha256');
  child.stdout.on('data', (c: Buffer) => hash.update(c));
  child.stdout.pipe(out, { end: false });
  await new Promise<void>((resolve) => child.stdout.once('end', resolve));
  await new Promise<void>((resolve, reject) => out.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  await fh.sync();
  hash.digest('hex');
  await fh.close();
  const code = await exited;
  if (code !== 0) throw new Error(`pg_basebackup exited with ${code}`);
}

main().catch((err: unknown) => {
  console.error(String(err));
  process.exitCode = 1;
});
