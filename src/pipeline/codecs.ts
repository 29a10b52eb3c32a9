/**
 * The codecs a stored object's bytes pass through, in the one order they are applied:
 * compression, then encryption. Each entry holds everything about its codec: the suffix it adds
 * to a stored name, its write stage, its read stage, what must be at hand to read it, and the
 * standard command that undoes it by hand. Names, the write and read sides, `restore_command` and
 * the `restore --dry-run` script all come from this list: adding a codec is one entry here and
 * its tests (CONTRIBUTING: "Adding a codec or a stage to the pipeline").
 */
import type { Duplex, Readable } from 'node:stream';
import {
  decompressForProgram,
  decompressStage,
  decompressToFileStage,
  gzipCompressStage,
  noZstdError,
  zstdCompressStage,
  type Compressor,
  type ZstdSource,
} from '../compress/compression';
import { checkKey, decrypt, encryptStage, type AgeProgram, type Identities } from '../crypto/age';

/** What the write stages are given: how this object is compressed, and whom it is encrypted to. */
export interface EncodeContext {
  /** Given whenever the chain holds a compression codec. */
  compressor?: Compressor | undefined;
  /** The public keys of an encrypted object. */
  recipients?: string[] | undefined;
  /** The age program (BACKUP_AGE_PROGRAM); undefined: the library. */
  age?: AgeProgram | undefined;
}

/** What the read stages are given. */
export interface DecodeContext {
  /** The zstd that decompresses (the program, Node's, or none here). */
  zstd: ZstdSource;
  /** The keys that open an encrypted object; undefined: `missingKey()` says why there are none. */
  keys?: Identities | undefined;
  age?: AgeProgram | undefined;
  /** Whom the object was encrypted to, for messages. */
  recipients: string[];
  /** The error for an encrypted object with no keys given (NO_KEY, naming the setting). */
  missingKey(): Error;
}

/** The stored object being read: its name (which says its codecs) and how to open it again. */
export interface StoredName {
  /** Its name, for the messages of a stage that cannot undo it: "x.dump.zst cannot be decompressed". */
  file: string;
  /** Its name and where it is, for the messages of a key that does not fit: "x.dump.age on local". */
  where: string;
  /** Opens the stored bytes from their start (a key check reads the header only). */
  open(): Readable;
}

export interface Codec {
  /** Its name: BACKUP_COMPRESSION's method for a compression codec. */
  readonly name: string;
  /** What it adds to a stored object's name. */
  readonly suffix: string;
  /** A chain holds at most one codec of each role, in the list's order. */
  readonly role: 'compression' | 'encryption';
  /**
   * Its output cannot be read without a key: the sha256 of its input is recorded (the manifest's
   * `plain_sha256`) and checked once it is undone, and by hand it is undone into a file first.
   */
  readonly keyed: boolean;
  /** The write stage. */
  encode(ctx: EncodeContext): Duplex | Promise<Duplex>;
  /**
   * The read stage: `stage` joins the read pipeline; `open` takes the stream so far and resolves
   * once its header is read (a wrong key fails before any byte is delivered).
   */
  readonly decode: { stage(ctx: DecodeContext, o: StoredName): Duplex } | { open(source: Readable, ctx: DecodeContext, o: StoredName): Promise<Readable> };
  /** Checks, before anything is created, that this machine can undo it (a program, a key). */
  ready?(ctx: DecodeContext, o: StoredName): void | Promise<void>;
  /**
   * When a program undoes it that can write straight into another program's stdin (`zstd -dc |
   * pg_restore`): a starter for that hand-off (see programPipeStage); undefined when none is here.
   */
  decodeForProgram?(ctx: DecodeContext, o: StoredName): (() => { stage: Duplex; output: Readable }) | undefined;
  /** When a program undoes it that can write straight into the open file `fd`: that stage, started; undefined when none is here. */
  decodeToFile?(ctx: DecodeContext, fd: number, o: StoredName): Duplex | undefined;
  /** How it is undone with the standard tools. */
  readonly byHand: {
    /** The program and how to install it: "zstd", "apt-get install zstd". */
    tool: string;
    install: string;
    /** The filter that undoes it from stdin (or from a file named after it); KEY: the identity file. */
    filter(key: string): string;
    /** Undoes `input` into `output` (both shell words). */
    toFile(input: string, output: string, key: string): string;
  };
}

const zstd: Codec = {
  name: 'zstd',
  suffix: '.zst',
  role: 'compression',
  keyed: false,
  encode: (ctx) => zstdCompressStage(compressorOf(ctx)),
  decode: { stage: (ctx, o) => decompressStage('zstd', ctx.zstd, o.file) },
  ready: (ctx, o) => {
    if (!ctx.zstd) throw noZstdError(o.file);
  },
  decodeForProgram: (ctx, o) => (ctx.zstd && ctx.zstd !== 'builtin' ? () => decompressForProgram(ctx.zstd, o.file)! : undefined),
  decodeToFile: (ctx, fd, o) => decompressToFileStage(ctx.zstd, fd, o.file),
  byHand: {
    tool: 'zstd',
    install: 'apt-get install zstd',
    filter: () => 'zstd -dc',
    toFile: (input, output) => `zstd -q -d -o ${output} ${input}`,
  },
};

const gzip: Codec = {
  name: 'gzip',
  suffix: '.gz',
  role: 'compression',
  keyed: false,
  encode: (ctx) => gzipCompressStage(compressorOf(ctx)),
  decode: { stage: (ctx, o) => decompressStage('gzip', ctx.zstd, o.file) },
  byHand: {
    tool: 'gzip',
    install: 'apt-get install gzip',
    filter: () => 'gunzip -c',
    toFile: (input, output) => `gunzip -c ${input} > ${output}`,
  },
};

const age: Codec = {
  name: 'age',
  suffix: '.age',
  role: 'encryption',
  keyed: true,
  encode: (ctx) => encryptStage(ctx.recipients ?? [], ctx.age),
  decode: {
    open: (source, ctx, o) => {
      if (ctx.keys) return decrypt(source, ctx.keys, o.where, ctx.recipients, ctx.age);
      source.destroy();
      return Promise.reject(ctx.missingKey());
    },
  },
  ready: async (ctx, o) => {
    if (ctx.keys) await checkKey(o.open(), ctx.keys, o.where, ctx.recipients);
  },
  byHand: {
    tool: 'age',
    install: 'apt-get install age',
    filter: (key) => `age -d -i ${key}`,
    toFile: (input, output, key) => `age -d -i ${key} -o ${output} ${input}`,
  },
};

function compressorOf(ctx: EncodeContext): Compressor {
  if (!ctx.compressor) throw new Error('a compression codec needs the compressor chosen for the object');
  return ctx.compressor;
}

/** Every codec, in the order the write side applies them (the read side undoes them in reverse). */
export const CODECS: readonly Codec[] = [zstd, gzip, age];
