import { CODECS, type Codec } from './codecs';

/**
 * The codecs a new object goes through, in order: the compression codec named `compression`
 * (none for "none"), then, when `encrypted`, the encryption codec.
 */
export function chainFor(compression: string, encrypted: boolean): Codec[] {
  return CODECS.filter((c) => (c.role === 'compression' ? c.name === compression : encrypted));
}

/** The suffixes a chain adds to a name, in order: ".zst.age". */
export function suffixOf(chain: readonly Codec[]): string {
  return chain.map((c) => c.suffix).join('');
}

/**
 * The codecs a stored object went through, in the order they were applied, read from its name's
 * suffixes: "x.dump.zst.age" is zstd then age, "x.sql.gz" gzip, "x.dump" none. At most one
 * codec of each role, each after those before it in the list.
 */
export function chainOf(file: string): Codec[] {
  const chain: Codec[] = [];
  let name = file;
  for (const c of [...CODECS].reverse()) {
    if (!name.endsWith(c.suffix) || chain.some((d) => d.role === c.role)) continue;
    chain.unshift(c);
    name = name.slice(0, -c.suffix.length);
  }
  return chain;
}

/** The name without the suffix of `codec`, the last in it: what undoing it into a file gives. */
export function withoutSuffix(file: string, codec: Codec): string {
  return file.endsWith(codec.suffix) ? file.slice(0, -codec.suffix.length) : file;
}

/** The compression of a stored object's stream, from its name: "zstd" for ".zst" (before ".age"), "gzip" for ".gz", or undefined. */
export function streamCompressionOf(file: string): string | undefined {
  return chainOf(file).find((c) => c.role === 'compression')?.name;
}
