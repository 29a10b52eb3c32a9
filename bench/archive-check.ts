/**
 * Throughput of the streaming archive check (src/dump/custom-archive.ts) on archives already on
 * disk: `node dist/bench/archive-check.js FILE.dump…` (make them with `pg_dump -Fc DB | cat > FILE`
 * so they have the layout of a streamed archive). For each file it reads the file into memory,
 * then feeds it to the reader in 64 KiB pieces (what a pipe delivers), and prints MB/s and the
 * CPU time used, the median of 5 runs.
 */
import fs from 'node:fs';
import { CustomArchiveReader } from '../src/dump/custom-archive';

const PIECE = 64 * 1024;

function once(data: Buffer): { seconds: number; cpu: number; blocks: number } {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const r = new CustomArchiveReader();
  for (let at = 0; at < data.length; at += PIECE) r.write(data.subarray(at, at + PIECE));
  const s = r.end();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(cpu0);
  return { seconds, cpu: (c.user + c.system) / 1e6, blocks: s.dataBlocks };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

for (const file of process.argv.slice(2)) {
  const data = fs.readFileSync(file);
  once(data); // warm up
  const runs = Array.from({ length: 5 }, () => once(data));
  const seconds = median(runs.map((r) => r.seconds));
  const cpu = median(runs.map((r) => r.cpu));
  const mb = data.length / 1e6;
  console.log(`${file}: ${mb.toFixed(1)} MB, ${runs[0]!.blocks} data blocks, ${(mb / seconds).toFixed(0)} MB/s, ${cpu.toFixed(3)} s CPU`);
}
