import { ConfigError } from '../../errors';
import type { Reader } from '../reader';
import type { CompressionMethod, CompressionSetting } from '../types';

const LEVELS: Record<Exclude<CompressionMethod, 'none'>, [number, number]> = { zstd: [1, 19], gzip: [1, 9], lz4: [1, 12] };

const COMPRESSION_HINT =
  'Set BACKUP_COMPRESSION to zstd, zstd:LEVEL (1–19), gzip, gzip:LEVEL (1–9), lz4 (custom format, pg_dump 16+) or none; or remove it for zstd.';

/** Parses BACKUP_COMPRESSION: `zstd[:N]`, `gzip[:N]`, `lz4[:N]`, `none`, or a bare gzip level 0–9 (before zstd, the only form). */
export function parseCompression(raw: string): CompressionSetting {
  const text = raw.trim().toLowerCase();
  if (/^\d$/.test(text)) return Number(text) === 0 ? { method: 'none', level: undefined } : { method: 'gzip', level: Number(text) };
  if (text === 'none' || text === 'off') return { method: 'none', level: undefined };
  const m = /^(zstd|gzip|lz4)(?::(\d+))?$/.exec(text);
  if (!m) throw new ConfigError('BACKUP_COMPRESSION', `"${raw}" is not a compression`, COMPRESSION_HINT);
  const method = m[1] as keyof typeof LEVELS;
  if (m[2] === undefined) return { method, level: undefined };
  const level = Number(m[2]);
  const [lo, hi] = LEVELS[method];
  if (level < lo || level > hi) throw new ConfigError('BACKUP_COMPRESSION', `"${raw}": ${method} levels go from ${lo} to ${hi}`, COMPRESSION_HINT);
  return { method, level };
}

/** BACKUP_COMPRESSION, or undefined for the default (chosen when a backup runs: chooseCompressor). */
export function parseCompressionVar(r: Reader): CompressionSetting | undefined {
  const raw = r.raw('BACKUP_COMPRESSION');
  if (raw === undefined) return undefined;
  try {
    return parseCompression(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    r.errors.push(err);
    return undefined;
  }
}
