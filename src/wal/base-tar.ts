/**
 * What a base backup's tar stream says about itself, read as it passes (nothing is held but a
 * few small members): `backup_label` (where its WAL starts), the tail of `backup_manifest` (its
 * WAL range and checksum) and `global/pg_control` (the cluster's system identifier).
 */
import { Transform } from 'node:stream';

const BLOCK = 512;
/** How much of `backup_label` is kept (it is a few hundred bytes), and of `backup_manifest`'s end. */
const LABEL_MAX = 64 * 1024;
const MANIFEST_TAIL = 64 * 1024;

export interface TarFacts {
  label: string | undefined;
  /** The last 64 KB of backup_manifest: its WAL-Ranges and Manifest-Checksum are at its end. */
  manifestTail: string | undefined;
  /** pg_control's system identifier, as decimal text. */
  systemIdentifier: string | undefined;
  /** The members seen, and whether the two zero blocks that end a tar archive came. */
  members: number;
  ended: boolean;
}

type Keep = 'label' | 'manifest' | 'control';
const KEPT: Record<string, Keep> = { backup_label: 'label', backup_manifest: 'manifest', 'global/pg_control': 'control' };

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}

/** A tar header's size field: octal text, or base-256 when its first byte has the high bit set. */
function sizeField(b: Buffer): number {
  if ((b[0]! & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!;
    return n;
  }
  return parseInt(cString(b).trim() || '0', 8);
}

/** A pass-through stage that watches a tar stream; `facts()` once it has ended. */
export function tarWatch(): { stage: Transform; facts(): TarFacts } {
  const facts: TarFacts = { label: undefined, manifestTail: undefined, systemIdentifier: undefined, members: 0, ended: false };
  let header = Buffer.alloc(0);
  /** Bytes of the current member's data, then of its padding, still to come. */
  let data = 0;
  let padding = 0;
  let keep: Keep | undefined;
  let kept: Buffer[] = [];
  let keptBytes = 0;

  const finishMember = () => {
    if (!keep) return;
    const all = Buffer.concat(kept);
    if (keep === 'label') facts.label = all.subarray(0, LABEL_MAX).toString('utf8');
    else if (keep === 'manifest') facts.manifestTail = all.toString('utf8');
    else if (all.length >= 8) facts.systemIdentifier = all.readBigUInt64LE(0).toString();
    keep = undefined;
    kept = [];
    keptBytes = 0;
  };

  const onHeader = (h: Buffer) => {
    if (h.every((x) => x === 0)) {
      facts.ended = true;
      return;
    }
    const prefix = h.subarray(257, 263).toString('latin1').startsWith('ustar') ? cString(h.subarray(345, 500)) : '';
    const name = (prefix ? `${prefix}/` : '') + cString(h.subarray(0, 100));
    const size = sizeField(h.subarray(124, 136));
    facts.members++;
    data = size;
    padding = (BLOCK - (size % BLOCK)) % BLOCK;
    keep = KEPT[name.replace(/^\.\//, '')];
    if (data === 0) finishMember();
  };

  const take = (chunk: Buffer) => {
    if (!keep) return;
    kept.push(chunk);
    keptBytes += chunk.length;
    const limit = keep === 'manifest' ? MANIFEST_TAIL : keep === 'label' ? LABEL_MAX : 16;
    while (keep === 'manifest' && kept.length > 1 && keptBytes - kept[0]!.length >= limit) keptBytes -= kept.shift()!.length;
    if (keep !== 'manifest' && keptBytes > limit) {
      const all = Buffer.concat(kept).subarray(0, limit);
      kept = [all];
      keptBytes = all.length;
    }
  };

  const scan = (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length && !facts.ended) {
      if (data > 0) {
        const n = Math.min(data, chunk.length - at);
        take(chunk.subarray(at, at + n));
        data -= n;
        at += n;
        if (data === 0) finishMember();
      } else if (padding > 0) {
        const n = Math.min(padding, chunk.length - at);
        padding -= n;
        at += n;
      } else {
        const n = Math.min(BLOCK - header.length, chunk.length - at);
        header = Buffer.concat([header, chunk.subarray(at, at + n)]);
        at += n;
        if (header.length === BLOCK) {
          const h = header;
          header = Buffer.alloc(0);
          onHeader(h);
        }
      }
    }
  };

  const stage = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      scan(chunk);
      cb(null, chunk);
    },
  });
  return { stage, facts: () => facts };
}
