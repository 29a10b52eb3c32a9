import { formatAge, formatBytes } from '../util/format';
import { escapeHtml as e } from './html';
import type { PitrObservation } from './observe-pitr';

/** The status page's lines of a receiver's entry: WAL archiving and each target's recovery window (rows of the database's `<dl>`). */
export function pitrRows(p: PitrObservation): string {
  const a = p.archiving;
  let archiving: string;
  if (!a) archiving = `<span class="muted">not measured: ${e(p.error ?? 'unknown')}</span>`;
  else {
    const receiver = !a.receiver.running
      ? '<span class="bad">no receiver runs</span>'
      : a.receiver.streaming
        ? '<span class="ok">streaming</span>'
        : '<span class="bad">not streaming</span>';
    const behind =
      a.lag_seconds === null
        ? '<span class="muted">behind: unknown</span>'
        : a.lag_seconds > 0 || (a.behind_segments ?? 0) > 0
          ? `<span class="warn">${e(String(a.behind_segments ?? '?'))} segment(s) behind, the oldest waiting ${e(formatAge(a.lag_seconds * 1000))}</span>`
          : 'not behind';
    const last = a.last_archived ? `last archived <code>${e(a.last_archived.wal)}</code>` : 'nothing archived yet';
    archiving = `${receiver} · ${last} · ${behind} · spool ${a.queue.files} file(s), ${e(formatBytes(a.queue.bytes))}`;
  }
  const windows = p.windows.map((w) => {
    const span = w.error
      ? `<span class="bad">${e(w.error)}</span>`
      : w.earliest && w.latest
        ? `${e(w.earliest.slice(0, 19).replace('T', ' '))} → ${e(w.latest.slice(0, 19).replace('T', ' '))} UTC`
        : '<span class="muted">nothing recoverable yet</span>';
    const gaps = w.gaps.length > 0 ? ` · <span class="bad">${w.gaps.length} gap(s)</span>` : '';
    return `<dt>Recovery window (${e(w.target)})</dt><dd>${span}${gaps}</dd>`;
  });
  return [`<dt>WAL archiving</dt><dd>${archiving}</dd>`, ...windows].join('\n');
}
