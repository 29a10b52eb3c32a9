import crypto from 'node:crypto';
import type { BackupError } from '../errors';

/** The md5 of `buf`: what Content-MD5 and a multipart ETag are made of. */
export function md5(buf: Buffer): Buffer {
  return crypto.createHash('md5').update(buf).digest();
}

/**
 * The parts of one multipart upload: the bytes written, cut into parts of exactly `partSize`
 * (R2 rejects parts of differing sizes; only the last is shorter), at most `queueSize` in
 * flight, each sent with its md5. The first failure is kept and stops the writing.
 */
export class PartQueue {
  /** The parts the server took, in the order their answers came. */
  private readonly parts: { ETag: string; PartNumber: number; md5: Buffer }[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private partNumber = 0;
  private failure: BackupError | undefined;
  /** Bytes taken so far. */
  size = 0;

  constructor(
    private readonly send: (partNumber: number, body: Buffer, md5: Buffer) => Promise<string | undefined>,
    private readonly failed: (partNumber: number, err: unknown) => BackupError,
    private readonly partSize: number,
    private readonly queueSize: number,
  ) {}

  /**
   * Takes a chunk. Returns undefined when the next may come at once, else a promise that
   * resolves when the queue has room again; throws (or rejects) with the first failure.
   */
  take(chunk: Buffer): Promise<void> | undefined {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.size += chunk.length;
    if (this.failure) throw this.failure;
    if (this.pendingBytes < this.partSize) return undefined;
    return this.flush();
  }

  /** Sends what is left as the last part (an empty object gets one empty part) and waits for every part. */
  async end(): Promise<void> {
    if (this.pendingBytes > 0 || this.partNumber === 0) {
      const body = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      void this.upload(body);
    }
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
  }

  /** Resolves when no part is in flight, however they ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  /** The parts sent, by part number. */
  sorted(): { ETag: string; PartNumber: number; md5: Buffer }[] {
    return [...this.parts].sort((a, b) => a.PartNumber - b.PartNumber);
  }

  private async flush(): Promise<void> {
    while (this.pendingBytes >= this.partSize) {
      const all = Buffer.concat(this.pending, this.pendingBytes);
      const rest = all.subarray(this.partSize);
      this.pending = rest.length > 0 ? [Buffer.from(rest)] : [];
      this.pendingBytes = rest.length;
      void this.upload(all.subarray(0, this.partSize));
      while (this.inFlight.size >= this.queueSize) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure;
    }
  }

  private upload(body: Buffer): Promise<void> {
    const PartNumber = ++this.partNumber;
    const digest = md5(body);
    const p = this.send(PartNumber, body, digest)
      .then((ETag) => {
        if (!ETag) throw new Error(`no ETag for part ${PartNumber}`);
        this.parts.push({ ETag, PartNumber, md5: digest });
      })
      .catch((err: unknown) => {
        this.failure ??= this.failed(PartNumber, err);
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }
}
