import { TextDecoder } from 'node:util';
import { ArchiveProblem } from './archive-format';
import { pgDecoder } from './pg-encoding';

/** The table data a plain SQL dump holds. */
export interface SqlDumpSummary {
  tables: { schema: string; name: string }[];
}

const COMPLETE = '-- PostgreSQL database dump complete';
/** How much of a line is kept when it spans chunks; only short lines (comments, COPY, \restrict) matter. */
const LINE_KEEP = 64 * 1024;
const DATA_FOR = /^-- Data for Name: (.+); Type: TABLE DATA; Schema: (.+); Owner: /;
const BACKSLASH = 0x5c;

/**
 * Reads a plain SQL dump (pg_dump --format=plain, uncompressed) line by line as it streams
 * past, skipping the rows of COPY blocks, and checks that it ends as pg_dump ends one: the
 * "-- PostgreSQL database dump complete" line, followed only by comment dashes, blank lines and
 * the `\unrestrict` that matches the dump's `\restrict` (pg_dump 13.22, 14.19, 15.14, 16.10, 17.6
 * and later). Memory stays bounded by LINE_KEEP whatever the length of a line.
 */
export class SqlDumpReader {
  private readonly head = Buffer.alloc(LINE_KEEP);
  private headLen = 0;
  private lineLen = 0;
  private decoder = new TextDecoder('utf-8');
  private inCopy = false;
  /** Lines since the last "-- Data for Name:" comment: its COPY follows within a few. */
  private sinceDataHeader = Infinity;
  private restrictKey: string | undefined;
  private closed = false;
  private unrestricted = false;
  private contentAfterClose = false;
  private readonly tables: SqlDumpSummary['tables'] = [];

  write(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      if (this.lineLen === 0 && nl !== -1) {
        this.line(chunk, start, Math.min(end, start + LINE_KEEP), end - start);
      } else {
        const take = Math.min(LINE_KEEP - this.headLen, end - start);
        chunk.copy(this.head, this.headLen, start, start + take);
        this.headLen += take;
        this.lineLen += end - start;
        if (nl === -1) return;
        this.line(this.head, 0, this.headLen, this.lineLen);
        this.headLen = this.lineLen = 0;
      }
      start = nl + 1;
    }
  }

  /** The end of the dump: the tables it has data for, or why it is not complete. */
  end(): SqlDumpSummary {
    if (this.lineLen > 0) this.line(this.head, 0, this.headLen, this.lineLen);
    this.headLen = this.lineLen = 0;
    if (!this.closed) {
      throw new ArchiveProblem(
        'truncated',
        this.contentAfterClose
          ? `the SQL dump has content after pg_dump's closing line ("${COMPLETE}")`
          : `the SQL dump ends before pg_dump's closing line ("${COMPLETE}")`,
      );
    }
    if (this.restrictKey !== undefined && !this.unrestricted) throw new ArchiveProblem('truncated', 'the SQL dump ends before its closing "\\unrestrict" line');
    return { tables: this.tables };
  }

  /** One line: bytes [s, e) of `b`, `len` its full length (more than e - s when it was too long to keep). */
  private line(b: Buffer, s: number, e: number, len: number): void {
    if (this.inCopy) {
      if (len === 2 && b[s] === BACKSLASH && b[s + 1] === 0x2e) this.inCopy = false;
      return;
    }
    this.sinceDataHeader++;
    const text =
      len === e - s && (len === 0 || b[s] === 0x2d || b[s] === 0x43 || b[s] === BACKSLASH || b[s] === 0x53) ? this.decoder.decode(b.subarray(s, e)) : undefined;
    if (this.closed) {
      if (text === '--' || text === '' || (text !== undefined && this.isUnrestrict(text))) return;
      this.closed = false;
      this.contentAfterClose = true;
    }
    if (text === undefined || text === '') return;
    if (text === COMPLETE) {
      this.closed = true;
      this.unrestricted = false;
      return;
    }
    const data = DATA_FOR.exec(text);
    if (data) {
      this.tables.push({ schema: data[2]!, name: data[1]! });
      this.sinceDataHeader = 0;
    } else if (this.sinceDataHeader <= 3 && text.startsWith('COPY ') && text.endsWith(' FROM stdin;')) {
      this.inCopy = true;
    } else if (text.startsWith('\\restrict ') && this.restrictKey === undefined) {
      this.restrictKey = text.slice('\\restrict '.length);
    } else if (text.startsWith("SET client_encoding = '")) {
      this.decoder = pgDecoder(/'([^']+)'/.exec(text)?.[1]);
    }
  }

  private isUnrestrict(text: string): boolean {
    if (this.unrestricted || !text.startsWith('\\unrestrict ')) return false;
    if (this.restrictKey !== undefined && text !== `\\unrestrict ${this.restrictKey}`) return false;
    this.unrestricted = true;
    return true;
  }
}
