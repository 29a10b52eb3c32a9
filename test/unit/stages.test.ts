import crypto from 'node:crypto';
import { Duplex, PassThrough, Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Fanout } from '../../src/repository/fanout';
import { throughStages } from '../../src/pipeline/stages';

function collect(): { stream: Writable; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }), bytes: () => Buffer.concat(chunks) };
}

describe('throughStages', () => {
  it('with no stages, the producer writes into the destination itself', async () => {
    const out = collect();
    const staged = throughStages([], out.stream);
    expect(staged.stream).toBe(out.stream);
    await pipeline(Readable.from([Buffer.from('abc')]), staged.stream);
    await staged.done;
    expect(out.bytes().toString()).toBe('abc');
    expect(staged.digest()).toBeUndefined();
  });

  it('passes the bytes through every stage in order, with the digest of what reached the destination', async () => {
    const out = collect();
    const upper = new Transform({ transform: (c: Buffer, _e, cb) => cb(null, Buffer.from(c.toString().toUpperCase())) });
    const staged = throughStages([upper, zlib.createGzip()], out.stream);
    await pipeline(Readable.from([Buffer.from('hello '), Buffer.from('stages')]), staged.stream);
    await staged.done;
    const stored = out.bytes();
    expect(zlib.gunzipSync(stored).toString()).toBe('HELLO STAGES');
    expect(staged.digest()).toEqual({ sha256: crypto.createHash('sha256').update(stored).digest('hex'), size: stored.length });
  });

  it('reports a failure of the destination in done, even when the producer has already finished', async () => {
    const broken = new Writable({ write: (_c, _e, cb) => cb(new Error('disk full')) });
    const staged = throughStages([new PassThrough()], broken);
    await pipeline(Readable.from([Buffer.alloc(1024)]), staged.stream).catch(() => undefined);
    await expect(staged.done).rejects.toThrow('disk full');
  });

  it('behind a fan-out, a stage that still holds bytes when the producer ends delivers them all', async () => {
    // The fan-out ends (and is destroyed) as soon as its branches have taken the last chunk; a
    // stage flushes after that. Destroying it then lost the end of the data ("Premature close").
    const out = collect();
    // like the encryption stage: its writable side finishes before its readable side has ended
    const input = new PassThrough();
    const output = new PassThrough();
    input.on('data', (c: Buffer) => output.write(c));
    input.on('end', () => setTimeout(() => output.end(' (flushed)'), 20));
    const slowFlush = Duplex.from({ writable: input, readable: output });
    const staged = throughStages([slowFlush], out.stream);
    const fan = new Fanout([
      { name: 'stored', stream: staged.stream },
      { name: 'check', stream: new PassThrough().resume(), optional: true },
    ]);
    await pipeline(Readable.from([Buffer.from('all the data')]), fan);
    await staged.done;
    expect(out.bytes().toString()).toBe('all the data (flushed)');
    expect(fan.failures.size).toBe(0);
  });
});
