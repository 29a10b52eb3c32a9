import fs from 'node:fs/promises';
import path from 'node:path';
import { log } from '../logger';
import { renderMetrics } from '../monitor/metrics';
import type { Snapshot } from '../monitor/snapshot';
import type { SnapshotListener } from './watch';

/**
 * The Watch step that writes BACKUP_METRICS_FILE for node_exporter's textfile collector after
 * every snapshot (so after every check and every run). Replaced atomically: written to a
 * temporary name that does not end in `.prom` (the collector reads only `*.prom`) in the same
 * directory, fsynced, renamed over the file, the directory fsynced: a scrape reads the old file
 * or the new one, never half of one. Mode 0644: node_exporter runs as its own user, and the file
 * holds no secret (names of databases and targets, numbers). Node's process metrics are left out:
 * node_exporter exports its own `process_*`, and a name exported twice fails its scrape. A failed
 * write is logged once per cause (and once when it works again) and fails nothing.
 */
export function metricsFileWriter(file: string): SnapshotListener {
  let failing: string | undefined;
  return async (snapshot: Snapshot) => {
    try {
      await writeAtomically(file, await renderMetrics(snapshot, { processMetrics: false }));
      if (failing !== undefined) log.info('the metrics file is written again', { file });
      failing = undefined;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const cause = e.code ?? e.message;
      if (cause !== failing)
        log.error('cannot write the metrics file (BACKUP_METRICS_FILE); backups go on', {
          file,
          error: e.message,
          hint: `Check that ${path.dirname(file)} exists and this user may write there (node_exporter's --collector.textfile.directory), or unset BACKUP_METRICS_FILE.`,
        });
      failing = cause;
    }
  };
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}`);
  const handle = await fs.open(tmp, 'w', 0o644);
  try {
    try {
      await handle.writeFile(text);
      await handle.chmod(0o644); // whatever the umask
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  const d = await fs.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
