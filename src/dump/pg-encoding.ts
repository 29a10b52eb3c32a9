import { TextDecoder } from 'node:util';

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
