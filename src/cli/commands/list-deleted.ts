import type { App } from '../../app';
import { formatAge, formatBytes, printable, wrapText } from '../../util/format';
import { printJson, printTable, tableWidth } from '../output';

/** `list --deleted`: the backups a delete hid on one S3 target with versions, as a table or as JSON. */
export async function printDeleted(app: App, opts: { json?: boolean; target?: string }): Promise<void> {
  const { listDeleted, deletedJson } = await import('../../backup/deleted-listing.js');
  const listing = await listDeleted(app, opts.target);
  if (opts.json) {
    printJson(deletedJson(listing));
    return;
  }
  const database = app.database.db.database;
  const width = tableWidth();
  const say = (note: string) => process.stdout.write(wrapText(printable(note, Infinity), width, '    ').join('\n') + '\n');
  if (listing.versioning === 'suspended')
    say(`Versioning is suspended on ${listing.location}: deletes from now on are final. Turn it on again (docs/offsite.md#versioned-buckets).`);
  if (listing.rows.length === 0) {
    say(
      `No deleted backups of ${database} on ${listing.target}: every backup whose versions remain there is current (\`basement-backup list --target ${listing.target}\`).`,
    );
    return;
  }
  const now = Date.now();
  const rows = listing.rows.map(({ backup: b, deletedAt }) => {
    const m = b.manifest;
    return [
      b.id,
      m ? formatAge(now - Date.parse(m.created_at)) : '?',
      m ? formatBytes(m.size_bytes) : '',
      m?.format ?? '',
      printable(m?.label ?? '', 40),
      deletedAt ? deletedAt.toISOString().slice(0, 16).replace('T', ' ') : '?',
      b.damage === undefined ? 'DELETED' : 'DELETED, DAMAGED',
    ];
  });
  printTable(['id', 'age', 'size', 'format', 'label', 'deleted at', 'state'], rows, { width, shrink: [{ column: 4, floor: 10, cut: true }] });
  for (const { backup: b } of listing.rows) if (b.damage !== undefined) say(`${b.id} DAMAGED: ${b.damage}`);
  say(
    `DELETED: deleted on ${listing.target}, kept there as older versions. \`basement-backup restore ID --target ${listing.target}\` and \`verify ID --target ${listing.target}\` read them; ` +
      '`basement-backup sync --deleted` copies them back to the targets whose retention keeps them.',
  );
}
