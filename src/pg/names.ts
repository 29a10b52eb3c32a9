/** PostgreSQL keeps at most this many bytes of a name (NAMEDATALEN - 1) and silently cuts the rest. */
export const PG_NAME_MAX_BYTES = 63;

/** The longest start of `text` that is at most `maxBytes` bytes of UTF-8 and ends on a whole character. */
export function clipBytes(text: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const c of text) {
    bytes += Buffer.byteLength(c);
    if (bytes > maxBytes) break;
    out += c;
  }
  return out;
}

/**
 * `<base><suffix>`, with `base` shortened (by whole characters) so that the name fits in
 * PostgreSQL's 63 bytes: the name a database really gets is the one that is reported.
 */
export function fitName(base: string, suffix: string): string {
  return clipBytes(base, PG_NAME_MAX_BYTES - Buffer.byteLength(suffix)) + suffix;
}
