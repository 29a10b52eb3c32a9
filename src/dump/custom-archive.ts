/**
 * A streaming reader of PostgreSQL's custom archive format (`pg_dump --format=custom`) as pg_dump
 * writes it to a pipe: a header, the table of contents (TOC), then one data block for each TOC
 * entry that has data (TABLE DATA, BLOBS), in TOC order, up to the end of the file. The layout
 * follows pg_dump's own reader (pg_backup_archiver.c: ReadHead, ReadToc, ReadInt, ReadStr,
 * ReadOffset; pg_backup_custom.c: _ReadExtraToc, _readBlockHeader, _skipData, _skipLOs) for
 * archive versions 1.12 to 1.16 (pg_dump 9.0 to 17).
 *
 * It checks structure, not content: compressed data is skipped by its chunk lengths, never
 * inflated, so the cost is a few operations per chunk of pg_dump's output and the memory is the
 * TOC's names, whatever the size of the archive.
 */

import { TextDecoder } from 'node:util';

/** An entry of the table of contents that has, or should have, a data block. */
export interface ArchiveEntry {
  dumpId: number;
  /** e.g. "TABLE DATA", "BLOBS". */
  desc: string;
  /** The entry's schema, exactly as in the archive (decoded from the database's encoding). */
  namespace: string | null;
  /** The object's name (for TABLE DATA the table's name), exactly as in the archive. */
  tag: string | null;
  /** pg_dump wrote a data block for it. */
  hasData: boolean;
  /** Where in the archive the entry's data offset is (its flag byte), and the flag read there. */
  offsetField: { at: number; flag: number };
  /** Where its data block starts (its block type byte), once read. */
  dataPos?: number;
}

export interface ArchiveSummary {
  /** e.g. "1.14" */
  version: string;
  /** e.g. "gzip", "none", "lz4", "zstd" */
  compression: string;
  /** Number of entries in the table of contents. */
  tocEntries: number;
  /** The entries with data, and every TABLE DATA entry, in TOC order. */
  entries: ArchiveEntry[];
  dataBlocks: number;
  /** Bytes of (compressed) data in the data blocks, chunk headers excluded. */
  dataBytes: number;
  totalBytes: number;
  /** Bytes of an offset (after its flag byte), little-endian: see `seekableOffsets`. */
  offSize: number;
}

/** Why an archive is not complete: cut short, damaged, or of a version this reader does not know. */
export class ArchiveProblem extends Error {
  constructor(
    readonly kind: 'truncated' | 'damaged' | 'unsupported',
    message: string,
  ) {
    super(message);
    this.name = 'ArchiveProblem';
  }
}

/** Archive versions (major.minor) this reader knows; see K_VERS_* in pg_backup_archiver.h. */
export const SUPPORTED_VERSIONS = { min: [1, 12], max: [1, 16] } as const;

const MAGIC = Buffer.from('PGDMP');
const FORMAT_CUSTOM = 1; // archCustom
const BLK_DATA = 1;
const BLK_BLOBS = 3;
const K_OFFSET_POS_NOT_SET = 1;
const K_OFFSET_POS_SET = 2;
const K_OFFSET_NO_DATA = 3;
const INT_MAX = 0x7fffffff;
/** Names longer than this are not kept (no table name is; PostgreSQL's limit is 63 bytes). */
const NAME_KEEP_MAX = 64 * 1024;
const COMPRESSION_ALGORITHMS = ['none', 'gzip', 'lz4', 'zstd'];

/** What the reader asks the driver for next. */
type Op =
  | { read: number } // exactly n bytes
  | { skip: number } // n bytes, unseen
  | 'block' // a block type byte, or -1 at the end of the file
  | 'data'; // length-prefixed chunks up to a zero length

interface State {
  intBytes: number; // sign byte + intSize
  offSize: number;
  version: number;
  /** Bytes consumed before the current operation, for messages. */
  offset: number;
  /** Where the reader is, for "the archive ends inside …". */
  where: string;
  summary: ArchiveSummary;
}

type Reader<T> = Generator<Op, T, Buffer | number | undefined>;

function vers(major: number, minor: number): number {
  return major * 256 + minor;
}

function damaged(s: State, what: string): ArchiveProblem {
  return new ArchiveProblem('damaged', `the archive is damaged at byte ${s.offset}: ${what}`);
}

/** ReadInt: a sign byte, then intSize bytes little-endian; pg_dump writes only C ints. */
function decodeInt(buf: Buffer, at: number, intBytes: number): number | undefined {
  const sign = buf[at]!;
  if (sign > 1) return undefined;
  let v: number;
  if (intBytes === 5) v = buf.readUInt32LE(at + 1);
  else {
    v = 0;
    for (let i = intBytes - 1; i >= 1; i--) v = v * 256 + buf[at + i]!;
  }
  // INT_MIN is written as a sign and 2^31 (large object OIDs above 2^31 are written as negative ints)
  if (v > INT_MAX + sign) return undefined;
  return sign === 1 ? -v : v;
}

function* readInt(s: State): Reader<number> {
  const b = (yield { read: s.intBytes }) as Buffer;
  const v = decodeInt(b, 0, s.intBytes);
  if (v === undefined) throw damaged(s, 'not a valid integer');
  return v;
}

/** ReadStr: an int length (-1 for NULL), then the bytes; kept (copied) only when `keep`. */
function* readStr(s: State, keep: boolean): Reader<Buffer | null> {
  const len = yield* readInt(s);
  if (len === -1) return null;
  if (len < 0) throw damaged(s, `a string of length ${len}`);
  if (keep && len <= NAME_KEEP_MAX) return Buffer.from((yield { read: len }) as Buffer);
  yield { skip: len };
  return Buffer.alloc(0);
}

function* readHeader(s: State): Reader<void> {
  s.where = 'inside its header';
  const magic = (yield { read: 5 }) as Buffer;
  if (!magic.equals(MAGIC)) throw new ArchiveProblem('damaged', 'it is not a custom-format archive (no "PGDMP" at its start)');
  const [vmaj, vmin, vrev] = (yield { read: 3 }) as Buffer;
  const v = vers(vmaj!, vmin!);
  const [minMaj, minMin] = SUPPORTED_VERSIONS.min;
  const [maxMaj, maxMin] = SUPPORTED_VERSIONS.max;
  if (v < vers(minMaj, minMin) || v > vers(maxMaj, maxMin)) {
    throw new ArchiveProblem(
      'unsupported',
      `the archive has format version ${vmaj}.${vmin}, which this version of basement-backup cannot check (it reads ${minMaj}.${minMin} to ${maxMaj}.${maxMin}, written by pg_dump 9.0 to 17)`,
    );
  }
  s.version = v;
  s.summary.version = `${vmaj}.${vmin}${vrev ? `.${vrev}` : ''}`;
  const [intSize, offSize, format] = (yield { read: 3 }) as Buffer;
  if (!intSize || intSize > 8) throw damaged(s, `integer size ${intSize}`);
  if (!offSize || offSize > 16) throw damaged(s, `offset size ${offSize}`);
  if (format !== FORMAT_CUSTOM) throw new ArchiveProblem('damaged', `it is not a custom-format archive (format ${format})`);
  s.intBytes = 1 + intSize;
  s.offSize = offSize;
  s.summary.offSize = offSize;
  if (v >= vers(1, 15)) {
    const [algorithm] = (yield { read: 1 }) as Buffer;
    const name = COMPRESSION_ALGORITHMS[algorithm!];
    if (!name) throw new ArchiveProblem('unsupported', `the archive uses compression algorithm ${algorithm}, which basement-backup does not know`);
    s.summary.compression = name;
  } else {
    const level = yield* readInt(s);
    s.summary.compression = level === 0 ? 'none' : 'gzip';
  }
  for (let i = 0; i < 7; i++) yield* readInt(s); // creation time (struct tm)
  yield* readStr(s, false); // database name
  yield* readStr(s, false); // server version
  yield* readStr(s, false); // pg_dump version
}

/** The entries worth keeping, their names still in the database's encoding. */
interface RawEntry {
  dumpId: number;
  desc: string;
  namespace: Buffer | null;
  tag: Buffer | null;
  hasData: boolean;
  offsetField: { at: number; flag: number };
}

function* readToc(s: State): Reader<{ entries: RawEntry[]; encoding: string | undefined }> {
  s.where = 'inside its table of contents';
  const count = yield* readInt(s);
  if (count < 0) throw damaged(s, `a table of contents of ${count} entries`);
  s.summary.tocEntries = count;
  const entries: RawEntry[] = [];
  const ids = new Set<number>();
  let encoding: string | undefined;
  for (let i = 0; i < count; i++) {
    s.where = `inside its table of contents (entry ${i + 1} of ${count})`;
    const dumpId = yield* readInt(s);
    if (dumpId <= 0 || ids.has(dumpId)) throw damaged(s, `TOC entry ID ${dumpId}`);
    ids.add(dumpId);
    const hadDumper = yield* readInt(s);
    yield* readStr(s, false); // catalog table OID
    yield* readStr(s, false); // OID
    const tag = yield* readStr(s, true);
    const desc = (yield* readStr(s, true))?.toString('latin1') ?? '';
    yield* readInt(s); // section
    const defn = yield* readStr(s, desc === 'ENCODING');
    if (desc === 'ENCODING' && defn) encoding = /'([^']+)'/.exec(defn.toString('latin1'))?.[1];
    yield* readStr(s, false); // drop statement
    yield* readStr(s, false); // COPY statement
    const namespace = yield* readStr(s, true);
    yield* readStr(s, false); // tablespace
    if (s.version >= vers(1, 14)) yield* readStr(s, false); // table access method
    if (s.version >= vers(1, 16)) yield* readInt(s); // relkind
    yield* readStr(s, false); // owner
    yield* readStr(s, false); // "false": WITH OIDS
    while ((yield* readStr(s, false)) !== null); // dependencies, up to a NULL
    // _ReadExtraToc: the data offset, a flag byte then offSize bytes
    const flag = ((yield { read: 1 }) as Buffer)[0]!;
    if (flag < 1 || flag > 3) throw damaged(s, `data offset flag ${flag}`);
    const offsetField = { at: s.offset - 1, flag };
    yield { skip: s.offSize };
    const hasData = hadDumper !== 0 && flag !== K_OFFSET_NO_DATA;
    if (hasData || desc === 'TABLE DATA') entries.push({ dumpId, desc, namespace, tag, hasData, offsetField });
  }
  return { entries, encoding };
}

/** PostgreSQL encoding names that differ from WHATWG labels, for decoding the TOC's names. */
const ENCODINGS: Record<string, string> = {
  SQL_ASCII: 'utf-8', // node-postgres sees such names as UTF-8, so compare them that way
  UTF8: 'utf-8',
  LATIN1: 'iso-8859-1',
  LATIN2: 'iso-8859-2',
  LATIN3: 'iso-8859-3',
  LATIN4: 'iso-8859-4',
  LATIN5: 'iso-8859-9',
  LATIN6: 'iso-8859-10',
  LATIN7: 'iso-8859-13',
  LATIN8: 'iso-8859-14',
  LATIN9: 'iso-8859-15',
  LATIN10: 'iso-8859-16',
  ISO_8859_5: 'iso-8859-5',
  ISO_8859_6: 'iso-8859-6',
  ISO_8859_7: 'iso-8859-7',
  ISO_8859_8: 'iso-8859-8',
  WIN866: 'ibm866',
  KOI8R: 'koi8-r',
  KOI8U: 'koi8-u',
  EUC_JP: 'euc-jp',
  EUC_KR: 'euc-kr',
  SJIS: 'shift_jis',
  BIG5: 'big5',
  GBK: 'gbk',
  GB18030: 'gb18030',
};

/** A decoder for text in the PostgreSQL encoding `encoding` (e.g. "UTF8", "LATIN1"); UTF-8 when unknown. */
export function pgDecoder(encoding: string | undefined): TextDecoder {
  const name = encoding?.toUpperCase() ?? 'UTF8';
  const label = ENCODINGS[name] ?? (/^WIN(125\d)$/.exec(name) ? `windows-${name.slice(3)}` : 'utf-8');
  try {
    return new TextDecoder(label);
  } catch {
    return new TextDecoder('utf-8');
  }
}

/** How messages name an entry: "table public.users", "the large objects". */
export function describeEntry(e: Pick<ArchiveEntry, 'desc' | 'namespace' | 'tag'>): string {
  const name = `${e.namespace ? `${e.namespace}.` : ''}${e.tag ?? ''}`;
  if (e.desc === 'TABLE DATA') return `table ${name}`;
  if (e.desc === 'BLOBS') return e.tag && e.tag !== 'BLOBS' ? `the large objects (${e.tag})` : 'the large objects';
  return `${e.desc} ${name}`.trim();
}

function listed(entries: ArchiveEntry[]): string {
  const names = entries.slice(0, 5).map(describeEntry).join(', ');
  return entries.length > 5 ? `${names} and ${entries.length - 5} more` : names;
}

function* readArchive(s: State): Reader<void> {
  yield* readHeader(s);
  const raw = yield* readToc(s);
  const dec = pgDecoder(raw.encoding);
  const entries: ArchiveEntry[] = raw.entries.map((e) => ({
    dumpId: e.dumpId,
    desc: e.desc,
    namespace: e.namespace && dec.decode(e.namespace),
    tag: e.tag && dec.decode(e.tag),
    hasData: e.hasData,
    offsetField: e.offsetField,
  }));
  s.summary.entries = entries;
  const index = new Map<number, number>();
  entries.forEach((e, i) => index.set(e.dumpId, i));
  const done = new Set<number>();
  let last = -1;

  for (;;) {
    const start = s.offset;
    const type = (yield 'block') as number;
    if (type === -1) break;
    if (type !== BLK_DATA && type !== BLK_BLOBS) {
      const what = done.size === entries.filter((e) => e.hasData).length ? 'bytes after its last data block' : 'bytes where a data block should start';
      throw new ArchiveProblem('damaged', `the archive has unexpected ${what} (byte ${start}, value ${type})`);
    }
    s.where = `inside the header of a data block${last < 0 ? '' : ` (after the data of ${describeEntry(entries[last]!)})`}`;
    const id = yield* readInt(s);
    const i = index.get(id);
    const e = i === undefined ? undefined : entries[i];
    if (!e?.hasData) throw damaged(s, `a data block for entry ID ${id}, which has no data in the table of contents`);
    if (done.has(id)) throw damaged(s, `a second data block for ${describeEntry(e)}`);
    if (i! < last) throw damaged(s, `the data block of ${describeEntry(e)} is out of order`);
    if ((type === BLK_BLOBS) !== (e.desc === 'BLOBS')) throw damaged(s, `a data block of the wrong type for ${describeEntry(e)}`);
    s.where = `inside the data of ${describeEntry(e)}`;
    e.dataPos = start;
    if (type === BLK_DATA) yield 'data';
    else {
      // _skipLOs: per large object its OID then its chunks, up to an OID of 0
      while ((yield* readInt(s)) !== 0) yield 'data';
    }
    done.add(id);
    s.summary.dataBlocks++;
    last = i!;
  }

  const missing = entries.map((e, i) => ({ e, i })).filter(({ e }) => e.hasData && !done.has(e.dumpId));
  const skipped = missing.filter(({ i }) => i < last).map(({ e }) => e);
  if (skipped.length > 0) throw new ArchiveProblem('damaged', `the archive has no data block for ${listed(skipped)}`);
  if (missing.length > 0) {
    throw new ArchiveProblem('truncated', `the archive ends before its last data block: no data for ${listed(missing.map(({ e }) => e))}`);
  }
}

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
    this.state = {
      intBytes: 0,
      offSize: 0,
      version: 0,
      offset: 0,
      where: 'at its start',
      summary: { version: '', compression: '', tocEntries: 0, entries: [], dataBlocks: 0, dataBytes: 0, totalBytes: 0, offSize: 0 },
    };
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

/**
 * The writes that give an archive pg_dump wrote to a pipe the data offsets it writes when it can
 * seek in its output (pg_backup_custom.c: _WriteExtraToc, rewritten at _CloseArchive): for each
 * entry whose offset is "not set", the flag "set" and the position of its data block, in the
 * offset field of the same size. pg_restore --jobs needs them: without, each job scans the file
 * for its data, slower than one job. Each write is `bytes` at position `at`.
 */
export function seekableOffsets(summary: ArchiveSummary): { at: number; bytes: Buffer }[] {
  return unsetOffsets(summary).map(([at, pos]) => ({ at, bytes: offsetField(summary.offSize, pos) }));
}

/** [offset field position, data block position] of each entry with data whose offset is "not set". */
function unsetOffsets(summary: ArchiveSummary): [number, number][] {
  const out: [number, number][] = [];
  for (const e of summary.entries) {
    if (!e.hasData || e.dataPos === undefined || e.offsetField.flag !== K_OFFSET_POS_NOT_SET) continue;
    out.push([e.offsetField.at, e.dataPos]);
  }
  return out;
}

/** An offset field saying "set" to `pos`: the flag, then `size` bytes little-endian. */
function offsetField(size: number, pos: number): Buffer {
  const bytes = Buffer.alloc(1 + size);
  bytes[0] = K_OFFSET_POS_SET;
  let v = BigInt(pos);
  for (let i = 1; i <= size; i++, v >>= 8n) bytes[i] = Number(v & 0xffn);
  return bytes;
}

/**
 * The data offsets of an archive as a backup's manifest records them (`data_offsets`): the
 * offsets' size and, for each entry that has data, [its offset field's position, its data block's
 * position]. Undefined when there is nothing to record, or more than `max` entries (a manifest stays small).
 */
export function recordedOffsets(summary: ArchiveSummary, max = 100_000): DataOffsets | undefined {
  const at = unsetOffsets(summary);
  if (at.length === 0 || at.length > max) return undefined;
  return { size: summary.offSize, at };
}

/** Where an archive's data blocks are: see recordedOffsets. */
export interface DataOffsets {
  size: number;
  at: [number, number][];
}

/**
 * The writes of seekableOffsets from recorded offsets, each checked against the archive `file`
 * first: its offset field says "not set" and its data block's first byte is a data block's type.
 * Undefined when one does not fit (the caller then reads the archive instead).
 */
export async function offsetWrites(
  fh: { read(buf: Buffer, off: number, len: number, pos: number): Promise<{ bytesRead: number }> },
  fileSize: number,
  rec: DataOffsets,
): Promise<{ at: number; bytes: Buffer }[] | undefined> {
  if (!Number.isInteger(rec.size) || rec.size < 1 || rec.size > 8 || !Array.isArray(rec.at)) return undefined;
  const one = Buffer.alloc(1);
  const byteAt = async (pos: number) => ((await fh.read(one, 0, 1, pos)).bytesRead === 1 ? one[0] : undefined);
  const out: { at: number; bytes: Buffer }[] = [];
  for (const pair of rec.at) {
    if (!Array.isArray(pair) || pair.length !== 2) return undefined;
    const [at, pos] = pair;
    if (!Number.isSafeInteger(at) || !Number.isSafeInteger(pos) || at < 0 || pos <= at || at + 1 + rec.size > fileSize || pos >= fileSize) return undefined;
    if ((await byteAt(at)) !== K_OFFSET_POS_NOT_SET) return undefined;
    const type = await byteAt(pos);
    if (type !== BLK_DATA && type !== BLK_BLOBS) return undefined;
    out.push({ at, bytes: offsetField(rec.size, pos) });
  }
  return out;
}
