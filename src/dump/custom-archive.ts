/**
 * A streaming check of PostgreSQL's custom archive format (`pg_dump --format=custom`) as pg_dump
 * writes it to a pipe: the bytes are handed, as they stream past, to the reader of the archive's
 * layout (archive-layout.ts: header, table of contents, one data block per entry with data).
 *
 * It checks structure, not content: compressed data is skipped by its chunk lengths, never
 * inflated, so the cost is a few operations per chunk of pg_dump's output and the memory is the
 * TOC's names, whatever the size of the archive.
 */

import { ArchiveProblem, decodeInt, type ArchiveSummary } from './archive-format';
import { damaged, initialState, readArchive, type Op, type Reader, type State } from './archive-layout';

/**
 * Reads a custom-format archive as it streams past, chunk by chunk, with chunks cut anywhere.
 * `write` never throws; `end` returns what the archive holds, or throws the first
 * ArchiveProblem found: a bad header or TOC, a data block missing, unterminated, of an unknown
 * entry, repeated or out of order, bytes after the last block, or an end of file anywhere but
 * right after a complete block (or the TOC, when nothing has data).
 */
export class CustomArchiveReader {
  private readonly state: State;
  private readonly gen: Reader<void>;
  private op: Op | 'done' = 'done';
  private problem: ArchiveProblem | undefined;
  private consumed = 0;
  // a `read` that spans chunks
  private acc = Buffer.alloc(64);
  private accHave = 0;
  private skipLeft = 0;
  // inside a data block: the chunk header being read, and the bytes left of the current chunk
  private readonly hdr = Buffer.alloc(16);
  private hdrHave = 0;
  private chunkLeft = 0;

  constructor() {
    this.state = initialState();
    this.gen = readArchive(this.state);
    this.guard(() => this.advance(undefined, 0));
  }

  write(chunk: Buffer): void {
    if (this.problem) return;
    this.guard(() => this.feed(chunk));
    this.consumed += chunk.length;
  }

  /** The end of the stream: what the archive holds, or why it is not complete. */
  end(): ArchiveSummary {
    if (!this.problem) {
      this.state.offset = this.consumed;
      if (this.op === 'block') this.guard(() => this.advance(-1, this.consumed));
      else if (this.op !== 'done') this.problem = new ArchiveProblem('truncated', `the archive ends ${this.state.where}`);
    }
    if (this.problem) throw this.problem;
    this.state.summary.totalBytes = this.consumed;
    return this.state.summary;
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof ArchiveProblem)) throw err;
      this.problem = err;
    }
  }

  /** Hands `value` to the reader and takes its next operation; zero-length ones are done at once. */
  private advance(value: Buffer | number | undefined, offset: number): void {
    let v = value;
    for (;;) {
      this.state.offset = offset;
      const r = this.gen.next(v);
      if (r.done) {
        this.op = 'done';
        return;
      }
      const op = r.value;
      this.op = op;
      if (typeof op === 'object' && 'skip' in op) {
        if (op.skip > 0) return void (this.skipLeft = op.skip);
        v = undefined;
      } else if (typeof op === 'object' && op.read === 0) {
        v = Buffer.alloc(0);
      } else {
        if (op === 'data') this.chunkLeft = this.hdrHave = 0;
        if (typeof op === 'object') {
          this.accHave = 0;
          if (this.acc.length < op.read) this.acc = Buffer.alloc(op.read);
        }
        return;
      }
    }
  }

  private feed(chunk: Buffer): void {
    const n = chunk.length;
    const base = this.consumed;
    let pos = 0;
    while (pos < n) {
      const op = this.op;
      if (op === 'data') {
        pos = this.dataChunks(chunk, pos, base);
      } else if (op === 'block') {
        this.advance(chunk[pos++], base + pos);
      } else if (op === 'done') {
        // unreachable: the reader finishes only at the end of the stream
        throw new ArchiveProblem('damaged', `the archive has unexpected bytes at byte ${base + pos}`);
      } else if ('skip' in op) {
        const take = Math.min(this.skipLeft, n - pos);
        this.skipLeft -= take;
        pos += take;
        if (this.skipLeft === 0) this.advance(undefined, base + pos);
      } else if (this.accHave === 0 && n - pos >= op.read) {
        pos += op.read;
        this.advance(chunk.subarray(pos - op.read, pos), base + pos);
      } else {
        const take = Math.min(op.read - this.accHave, n - pos);
        chunk.copy(this.acc, this.accHave, pos, pos + take);
        this.accHave += take;
        pos += take;
        if (this.accHave === op.read) this.advance(this.acc.subarray(0, op.read), base + pos);
      }
    }
  }

  /** Skips length-prefixed chunks (_skipData) up to the zero length that ends a block; returns the new position. */
  private dataChunks(chunk: Buffer, start: number, base: number): number {
    const n = chunk.length;
    const w = this.state.intBytes;
    let pos = start;
    while (pos < n) {
      if (this.chunkLeft > 0) {
        const take = Math.min(this.chunkLeft, n - pos);
        this.chunkLeft -= take;
        this.state.summary.dataBytes += take;
        pos += take;
        continue;
      }
      let len: number | undefined;
      if (this.hdrHave === 0 && n - pos >= w) {
        len = decodeInt(chunk, pos, w);
        pos += w;
      } else {
        const take = Math.min(w - this.hdrHave, n - pos);
        chunk.copy(this.hdr, this.hdrHave, pos, pos + take);
        this.hdrHave += take;
        pos += take;
        if (this.hdrHave < w) return pos;
        this.hdrHave = 0;
        len = decodeInt(this.hdr, 0, w);
      }
      if (len === undefined || len < 0) {
        this.state.offset = base + pos - w;
        throw damaged(this.state, `a data chunk of invalid length ${this.state.where}`);
      }
      if (len === 0) {
        this.advance(undefined, base + pos);
        return pos;
      }
      this.chunkLeft = len;
    }
    return pos;
  }
}
