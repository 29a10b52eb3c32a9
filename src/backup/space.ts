import type { App, Target } from '../app';
import { BackupError } from '../errors';
import { PERIODS } from '../retention/calendar';
import { applyRetention, describeRules, type KeptBy } from '../retention/policy';
import type { Manifest } from '../repository/manifest';
import { isGood, type Listing } from '../repository/repository';
import { formatBytes } from '../util/format';

/**
 * Refuses a backup that clearly will not fit on a target that can tell its free space: the
 * expected size is the previous backup's, or half the database's size when there is none, and
 * BACKUP_MIN_FREE_MB must stay free after it (a full disk can stop PostgreSQL itself when they
 * share it). The hint says what would actually free space there.
 */
export async function checkSpace(app: App, listings: Map<Target, Listing>, databaseSize: number): Promise<void> {
  for (const [t, listing] of listings) {
    const free = await t.repo.freeBytes().catch(() => undefined);
    if (free === undefined) continue;
    const previous = listing.backups.find(isGood)?.manifest;
    const expected = previous ? previous.size_bytes : Math.round(databaseSize / 2);
    const needed = expected + app.config.minFreeBytes;
    if (free < needed) {
      throw new BackupError(
        'NO_SPACE',
        `only ${formatBytes(free)} free in ${t.repo.location}; the backup needs about ${formatBytes(expected)} plus the ${formatBytes(app.config.minFreeBytes)} reserve (BACKUP_MIN_FREE_MB)`,
        { hint: spaceHint(t, listing, needed - free, app.config.timezone) },
      );
    }
  }
}

/** What would free space on a full target, measured on its backups, largest first. */
function spaceHint(t: Target, listing: Listing, short: number, timeZone: string, now = new Date()): string {
  const bytes = (xs: { size: number }[]) => xs.reduce((s, x) => s + x.size, 0);
  const sized = (ms: Manifest[]) => ms.map((m) => ({ size: m.size_bytes }));
  const { days, minCount } = t.retention;
  const decisions = applyRetention(
    listing.backups.filter(isGood).map((b) => b.manifest),
    t.retention,
    now,
    timeZone,
  );
  const deletable = decisions.filter((d) => d.action === 'delete').map((d) => d.manifest);
  /** Backups kept by these rules and no other (never the newest: nothing frees it). */
  const keptOnlyBy = (rules: KeptBy['rule'][]) =>
    decisions.filter((d, i) => i > 0 && d.keptBy.length > 0 && d.keptBy.every((k) => rules.includes(k.rule))).map((d) => d.manifest);
  const pinned = decisions.filter((d) => d.keptBy.some((k) => k.rule === 'pinned')).map((d) => d.manifest);
  const byCount = keptOnlyBy(['min-count']);
  const byDays = keptOnlyBy(['days']);
  const byPeriods = keptOnlyBy([...PERIODS]);
  const damaged = listing.backups.filter((b) => !isGood(b)).map((b) => ({ size: b.storedSize ?? 0 }));
  const options: { size: number; text: string }[] = [
    {
      size: bytes(sized(deletable)),
      text: `\`basement-backup prune\` deletes ${deletable.length} backup(s) retention already allows to go (it runs only after a successful backup)`,
    },
    {
      size: bytes(damaged),
      text: `${damaged.length} damaged backup(s) never count and retention never deletes them: \`basement-backup prune --damaged\` removes them`,
    },
    { size: bytes(listing.orphans), text: `${listing.orphans.length} object(s) no manifest owns: \`basement-backup prune\` removes them` },
    {
      size: bytes(sized(byCount)),
      text: `${byCount.length} backup(s) older than ${days} days are kept only by the minimum count (BACKUP_RETENTION_MIN_COUNT, now ${minCount}): lowering it frees them`,
    },
    {
      size: bytes(sized(byDays)),
      text: `${byDays.length} backup(s) beyond the newest ${minCount} are kept only because they are younger than ${days} days (BACKUP_RETENTION_DAYS): lowering it frees them`,
    },
    {
      size: bytes(sized(byPeriods)),
      text: `${byPeriods.length} backup(s) are kept only as the newest of a day, week, month or year (${describeRules(t.retention)}): lowering BACKUP_KEEP_DAILY/WEEKLY/MONTHLY/YEARLY frees them`,
    },
    { size: bytes(sized(pinned)), text: `${pinned.length} pinned backup(s) are kept until their date (\`basement-backup unpin ID\` releases one)` },
  ]
    .filter((o) => o.size > 0)
    .sort((a, b) => b.size - a.size);
  const total = bytes(listing.backups.map((b) => ({ size: b.storedSize ?? 0 }))) + bytes(listing.orphans);
  const lines = options.map((o) => `${o.text} (${formatBytes(o.size)})`);
  const enough = bytes(options) >= short;
  const tail = enough
    ? ''
    : ` The backups use ${formatBytes(total)} in all${options.length > 0 ? ', not enough' : ''}: free ${formatBytes(short)} elsewhere on that disk (\`du -xsh /* | sort -h\`), or point BACKUP_DIR at a larger disk.`;
  return lines.length > 0 ? `${lines.join('; ')}.${tail}` : tail.trim();
}
