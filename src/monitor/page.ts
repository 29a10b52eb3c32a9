import { formatAge, formatBytes } from '../util/format';
import { lineChart } from './chart';
import type { Finding } from './findings';
import { escapeHtml as e } from './html';
import { pitrRows } from './page-pitr';
import type { BackupPoint, Observation, TargetObservation } from './observe';
import type { Snapshot } from './snapshot';

/** How many of the newest backups the table shows per database. */
const TABLE_ROWS = 10;

const STYLE = `
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#6e7781;--line:#d0d7de}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:960px;padding:12px}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid var(--line)}
h3{font-size:1em;margin:1em 0 .3em}
.muted,.empty{color:var(--muted)}.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}
.banner{padding:.6em .8em;border-radius:6px;border:1px solid var(--line);margin:.6em 0}
.banner.ok{border-color:var(--ok)}.banner.bad{border-color:var(--bad)}
.findings li{margin:.4em 0}.fix{display:block;color:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid var(--line);white-space:nowrap}
td.num,th.num{text-align:right}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.4em 0}dt{color:var(--muted)}dd{margin:0}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.chart{width:100%;height:auto}.chart .line{fill:none;stroke:#0969da;stroke-width:2}
.chart .dot{fill:#0969da}.chart .dot.mark{fill:var(--bad)}.chart .grid{stroke:var(--line)}
.chart .axis{font-size:14px;fill:var(--muted)}
figure{margin:0}figcaption{color:var(--muted);font-size:.9em}
@media (max-width:640px){.charts{grid-template-columns:1fr}body{font-size:14px}.wide{display:none}}
`;

const when = (iso: string | null | undefined, now: number) =>
  iso
    ? `<time datetime="${e(iso)}">${e(iso.slice(0, 16).replace('T', ' '))} UTC</time> <span class="muted">(${e(relative(Date.parse(iso), now))})</span>`
    : '<span class="muted">never</span>';

function relative(at: number, now: number): string {
  return at > now ? `in ${formatAge(at - now)}` : `${formatAge(now - at)} ago`;
}

/**
 * The status page (issue 21): one HTML document for a person, from one snapshot. Per database
 * the newest backups, their size and duration as inline SVG charts, the last drill, next runs,
 * each target's state and disk, and the open findings with their fix. No script, nothing loaded
 * from elsewhere, every value escaped; readable on a phone. Pure.
 */
export function statusPage(s: Snapshot | undefined): string {
  if (!s) return document('Starting', '<p class="banner">The daemon has just started: its first check has not ended yet. This page refreshes itself.</p>');
  const now = Date.parse(s.taken_at);
  const body = [
    `<p class="muted">Checked ${when(s.taken_at, now)} · daemon ${e(s.daemon.version)}, up since ${when(s.daemon.started_at, now)}</p>`,
    findingsSection(s.findings),
    ...s.observations.map((o) =>
      databaseSection(
        o,
        s.findings.filter((f) => f.name === o.name),
        now,
      ),
    ),
  ];
  return document(s.findings.some((f) => f.health) ? 'Failing' : 'OK', body.join('\n'));
}

function document(state: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="60">
<title>${e(state)} · basement-backup</title>
<style>${STYLE}</style></head>
<body><h1>basement-backup</h1>
${body}
</body></html>
`;
}

function findingsSection(findings: Finding[]): string {
  const red = findings.some((f) => f.health);
  if (findings.length === 0) return '<p class="banner ok"><strong class="ok">All is well.</strong> Every database has a recent backup on every target.</p>';
  const items = findings
    .map((f) => `<li><strong class="${f.health ? 'bad' : 'warn'}">${e(f.title)}</strong><br>${e(f.message)}<span class="fix">Fix: ${e(f.fix)}</span></li>`)
    .join('');
  return `<section class="banner ${red ? 'bad' : ''}"><strong>${findings.length} open ${findings.length === 1 ? 'alert' : 'alerts'}</strong>${red ? ' (/healthz answers 503)' : ''}<ul class="findings">${items}</ul></section>`;
}

function databaseSection(o: Observation, findings: Finding[], now: number): string {
  const history = richest(o.targets);
  const state = findings.some((f) => f.health)
    ? '<span class="bad">failing</span>'
    : findings.length
      ? '<span class="warn">warning</span>'
      : '<span class="ok">ok</span>';
  return `<section class="database" data-database="${e(o.name)}">
<h2>${e(o.name)} <span class="muted">(${e(o.database)})</span> · ${state}</h2>
<dl>
<dt>Schedule</dt><dd><code>${e(o.schedule)}</code>${o.running ? ' · <strong>a backup runs now</strong>' : ''}</dd>
<dt>Next backup</dt><dd>${when(o.next_backup_at, now)}</dd>
<dt>Last attempt</dt><dd>${o.last_attempt ? `${when(o.last_attempt.finished_at, now)} ${o.last_attempt.ok ? '<span class="ok">ok</span>' : '<span class="bad">failed</span>'}` : '<span class="muted">none recorded</span>'}</dd>
${o.failure_streak > 0 ? `<dt>Failing</dt><dd class="bad">${o.failure_streak} in a row${o.last_failure ? `: ${e(o.last_failure.message)}` : ''}</dd>` : ''}
<dt>Last drill</dt><dd>${drill(o, now)}</dd>
<dt>Next drill</dt><dd>${o.verify_schedule ? when(o.next_drill_at, now) : '<span class="muted">drills off (VERIFY_SCHEDULE)</span>'}</dd>
<dt>Maximum age</dt><dd>${e(formatAge(o.max_age_ms))}</dd>
${o.pitr ? pitrRows(o.pitr) : ''}
</dl>
<h3>Targets</h3>
${targetsTable(o.targets, now)}
<h3>Size and duration${history ? ` on ${e(history.name)}` : ''}</h3>
${charts(history?.good ?? [])}
<h3>Newest backups${history ? ` on ${e(history.name)}` : ''}</h3>
${backupsTable(history?.good ?? [], now)}
</section>`;
}

/** The target with the most good backups listed: the charts and the table are drawn from it. */
function richest(targets: TargetObservation[]): TargetObservation | undefined {
  return [...targets].sort((a, b) => b.good.length - a.good.length)[0];
}

function drill(o: Observation, now: number): string {
  const d = o.last_drill;
  if (!d) return '<span class="muted">none yet</span>';
  const restore = d.restore_ms === null ? '' : `, restored in ${e(formatAge(d.restore_ms))}`;
  return `${when(d.verified_at, now)} of <code>${e(d.id)}</code>: ${d.ok ? `<span class="ok">passed</span>${restore}` : `<span class="bad">failed</span>: ${e(d.error ?? '')}`}`;
}

/** The newest drill of a backup read from this target. */
function targetDrill(t: TargetObservation, now: number): string {
  const d = t.last_drill;
  if (!d) return '<span class="muted">never</span>';
  return `${when(d.verified_at, now)}: ${d.ok ? '<span class="ok">passed</span>' : '<span class="bad">failed</span>'}`;
}

/** Encrypted and immutable (Object Lock): what survives a stolen server. */
function protection(t: TargetObservation): string {
  const encrypted = t.encrypted === null ? '' : t.encrypted ? 'encrypted' : '<span class="muted">not encrypted</span>';
  const immutable = t.immutable === 'none' ? '<span class="muted">no lock</span>' : e(`${t.immutable} lock`);
  return [encrypted, immutable].filter((x) => x !== '').join(', ');
}

function targetsTable(targets: TargetObservation[], now: number): string {
  const rows = targets.map((t) => {
    if (t.error !== null)
      return `<tr><td>${e(t.name)}</td><td class="wide">${e(t.location)}</td><td class="bad" colspan="7">cannot be listed: ${e(t.error)}</td></tr>`;
    const newest = t.good[0];
    const disk = t.disk
      ? `${e(formatBytes(t.disk.free_bytes))} free${t.disk.days_to_full === null ? '' : `, full in ~${Math.floor(t.disk.days_to_full)} days`}`
      : '<span class="muted">n/a</span>';
    return `<tr><td>${e(t.name)}</td><td class="wide">${e(t.location)}</td><td>${newest ? when(newest.created_at, now) : '<span class="bad">no good backup</span>'}</td><td class="num">${t.good_count ?? ''}</td><td class="num">${e(formatBytes(t.stored_bytes ?? 0))}</td><td class="num${t.damaged ? ' bad' : ''}">${t.damaged ?? ''}</td><td>${disk}</td><td>${targetDrill(t, now)}</td><td>${protection(t)}</td></tr>`;
  });
  return `<div class="scroll"><table class="targets"><thead><tr><th>Target</th><th class="wide">Where</th><th>Newest</th><th class="num">Good</th><th class="num">Stored</th><th class="num">Damaged</th><th>Disk</th><th>Last drill</th><th>Protection</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

function charts(good: BackupPoint[]): string {
  const label = (b: BackupPoint, what: string) => `${b.created_at.slice(0, 16).replace('T', ' ')}: ${what}${b.anomaly ? ` (unusual: ${b.anomaly.kind})` : ''}`;
  const size = good.map((b) => ({ at: Date.parse(b.created_at), value: b.size_bytes, label: label(b, formatBytes(b.size_bytes)), mark: b.anomaly !== null }));
  const duration = good.map((b) => ({ at: Date.parse(b.created_at), value: b.duration_ms / 1000, label: label(b, formatAge(b.duration_ms)) }));
  return `<div class="charts">${lineChart('Backup size', size, (v) => formatBytes(Math.round(v)))}${lineChart('Backup duration', duration, (v) => `${Math.round(v * 10) / 10} s`)}</div>`;
}

function backupsTable(good: BackupPoint[], now: number): string {
  if (good.length === 0) return '<p class="empty">No good backup yet.</p>';
  const rows = good
    .slice(0, TABLE_ROWS)
    .map(
      (b) =>
        `<tr${b.anomaly ? ' class="anomaly"' : ''}><td>${when(b.created_at, now)}</td><td class="num">${e(formatBytes(b.size_bytes))}</td><td class="num">${e(formatAge(b.duration_ms))}</td><td>${b.anomaly ? `<span class="bad" title="${e(`${b.anomaly.ratio.toFixed(2)} times the median`)}">⚠ ${b.anomaly.kind === 'small' ? 'smaller' : 'larger'} than usual</span>` : ''}</td><td class="wide"><code>${e(b.id)}</code></td></tr>`,
    );
  return `<div class="scroll"><table class="backups"><thead><tr><th>Taken</th><th class="num">Size</th><th class="num">Duration</th><th>Size check</th><th class="wide">ID</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}
