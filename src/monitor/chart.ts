import { escapeHtml } from './html';

/** One value at one time, e.g. a backup's size. `mark` draws it as an anomaly. */
export interface ChartPoint {
  at: number;
  value: number;
  label: string;
  mark?: boolean;
}

const W = 480;
const H = 170;
const PAD = { left: 70, right: 12, top: 14, bottom: 26 };

/**
 * A line chart as inline SVG, drawn here on the server (no script, nothing loaded): the points
 * oldest to newest, each a circle with its label as a tooltip, marked ones in red. It scales to
 * the page's width (viewBox). `format` writes the axis' values.
 */
export function lineChart(title: string, points: ChartPoint[], format: (v: number) => string): string {
  const t = escapeHtml(title);
  if (points.length === 0) return `<p class="empty">${t}: no backup yet.</p>`;
  const sorted = [...points].sort((a, b) => a.at - b.at);
  const t0 = sorted[0]!.at;
  const t1 = sorted[sorted.length - 1]!.at;
  const top = Math.max(...sorted.map((p) => p.value)) * 1.1 || 1;
  const x = (at: number) => PAD.left + (t1 === t0 ? (W - PAD.left - PAD.right) / 2 : ((at - t0) / (t1 - t0)) * (W - PAD.left - PAD.right));
  const y = (v: number) => PAD.top + (1 - v / top) * (H - PAD.top - PAD.bottom);
  const r = (n: number) => Math.round(n * 10) / 10;
  const line = sorted.map((p, i) => `${i ? 'L' : 'M'}${r(x(p.at))},${r(y(p.value))}`).join(' ');
  const grid = [0, 0.5, 1]
    .map((f) => {
      const v = (top / 1.1) * f;
      return `<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${r(y(v))}" y2="${r(y(v))}"/><text class="axis" x="${PAD.left - 6}" y="${r(y(v)) + 4}" text-anchor="end">${escapeHtml(format(v))}</text>`;
    })
    .join('');
  // the day, or the day and time when the points span less than two days
  const day = (at: number) =>
    escapeHtml(
      new Date(at)
        .toISOString()
        .slice(5, t1 - t0 < 2 * 86400_000 ? 16 : 10)
        .replace('T', ' '),
    );
  const dots = sorted
    .map(
      (p) =>
        `<circle class="${p.mark ? 'dot mark' : 'dot'}" cx="${r(x(p.at))}" cy="${r(y(p.value))}" r="${p.mark ? 5 : 3}" data-value="${p.value}"><title>${escapeHtml(p.label)}</title></circle>`,
    )
    .join('');
  return [
    `<figure><figcaption>${t}</figcaption><svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${t}" xmlns="http://www.w3.org/2000/svg">`,
    `<title>${t}</title>${grid}`,
    `<text class="axis" x="${PAD.left}" y="${H - 6}">${day(t0)}</text><text class="axis" x="${W - PAD.right}" y="${H - 6}" text-anchor="end">${day(t1)}</text>`,
    `<path class="line" d="${line}"/>${dots}</svg></figure>`,
  ].join('');
}
