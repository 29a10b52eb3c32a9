/**
 * An order-independent digest of a table's rows as COPY text: every row (one line) is hashed
 * on its own and the row hashes are added up, so the result does not depend on the physical
 * order of rows, and any changed, missing or extra row changes it. Each row is hashed with two
 * murmur3-style 32-bit lanes with different seeds (64 bits in all). This detects corruption and
 * lost rows; it is not meant to resist a forger.
 */
export class RowDigest {
  private sum1 = 0;
  private sum2 = 0;
  private rows = 0;
  private carry: Buffer | undefined;

  update(chunk: Buffer): void {
    let start = 0;
    if (this.carry) {
      const nl = chunk.indexOf(0x0a);
      if (nl < 0) {
        this.carry = Buffer.concat([this.carry, chunk]);
        return;
      }
      const row = Buffer.concat([this.carry, chunk.subarray(0, nl)]);
      this.carry = undefined;
      this.addRow(row, 0, row.length);
      start = nl + 1;
    }
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      this.addRow(chunk, start, nl);
      start = nl + 1;
    }
    if (start < chunk.length) this.carry = Buffer.from(chunk.subarray(start));
  }

  private addRow(buf: Buffer, start: number, end: number): void {
    let h1 = 0x9747b28c;
    let h2 = 0x2f6e8a1d;
    let i = start;
    for (; i + 4 <= end; i += 4) {
      const w = buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
      let k = Math.imul(w, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h1 ^= k;
      h1 = (h1 << 13) | (h1 >>> 19);
      h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
      h2 ^= Math.imul(w ^ (w >>> 16), 0x85ebca6b);
      h2 = (h2 << 17) | (h2 >>> 15);
      h2 = (Math.imul(h2, 9) + 0x7f4a7c15) | 0;
    }
    let tail = 0;
    for (let s = 0; i < end; i++, s += 8) tail |= buf[i]! << s;
    const len = end - start;
    h1 ^= Math.imul((Math.imul(tail, 0xcc9e2d51) << 15) | (Math.imul(tail, 0xcc9e2d51) >>> 17), 0x1b873593) ^ len;
    h2 ^= Math.imul(tail ^ 0x5bd1e995, 0x85ebca6b) ^ len;
    this.sum1 = (this.sum1 + fmix(h1)) >>> 0;
    this.sum2 = (this.sum2 + fmix(h2 ^ h1)) >>> 0;
    this.rows++;
  }

  /** Row count and hex digest. A last row without a newline still counts. */
  finish(): { rows: number; digest: string } {
    if (this.carry) {
      this.addRow(this.carry, 0, this.carry.length);
      this.carry = undefined;
    }
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    return { rows: this.rows, digest: hex(this.sum1) + hex(this.sum2) };
  }
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
