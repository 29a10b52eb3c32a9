/**
 * The layout of a custom-format archive as a reader that asks for bytes: the header, the table of
 * contents, then one data block per entry with data, in TOC order, up to the end of the file. It
 * follows pg_dump's own reader (pg_backup_archiver.c: ReadHead, ReadToc, ReadInt, ReadStr,
 * ReadOffset; pg_backup_custom.c: _ReadExtraToc, _readBlockHeader, _skipData, _skipLOs) for
 * archive versions 1.12 to 1.16 (pg_dump 9.0 to 17). A generator: it yields what it needs next
 * (an Op) and gets the bytes back, so the archive can arrive in chunks cut anywhere
 * (CustomArchiveReader in custom-archive.ts feeds it).
 */

import {
  ArchiveProblem,
  BLK_BLOBS,
  BLK_DATA,
  COMPRESSION_ALGORITHMS,
  decodeInt,
  describeEntry,
  FORMAT_CUSTOM,
  K_OFFSET_NO_DATA,
  MAGIC,
  NAME_KEEP_MAX,
  SUPPORTED_VERSIONS,
  vers,
  type ArchiveEntry,
  type ArchiveSummary,
} from './archive-format';
import { pgDecoder } from './pg-encoding';

/** What the reader asks the driver for next. */
export type Op =
  | { read: number } // exactly n bytes
  | { skip: number } // n bytes, unseen
  | 'block' // a block type byte, or -1 at the end of the file
  | 'data'; // length-prefixed chunks up to a zero length

export interface State {
  intBytes: number; // sign byte + intSize
  offSize: number;
  version: number;
  /** Bytes consumed before the current operation, for messages. */
  offset: number;
  /** Where the reader is, for "the archive ends inside …". */
  where: string;
  summary: ArchiveSummary;
}

export type Reader<T> = Generator<Op, T, Buffer | number | undefined>;

/** A fresh reader's state: nothing read yet. */
export function initialState(): State {
  return {
    intBytes: 0,
    offSize: 0,
    version: 0,
    offset: 0,
    where: 'at its start',
    summary: { version: '', compression: '', tocEntries: 0, entries: [], dataBlocks: 0, dataBytes: 0, totalBytes: 0, offSize: 0 },
  };
}

export function damaged(s: State, what: string): ArchiveProblem {
  return new ArchiveProblem('damaged', `the archive is damaged at byte ${s.offset}: ${what}`);
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

/** At most five entries by name, and how many more. */
function listed(entries: ArchiveEntry[]): string {
  const names = entries.slice(0, 5).map(describeEntry).join(', ');
  return entries.length > 5 ? `${names} and ${entries.length - 5} more` : names;
}

/** The whole archive: its header, its TOC, then every data block checked against the TOC, up to the end of the file. */
export function* readArchive(s: State): Reader<void> {
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
