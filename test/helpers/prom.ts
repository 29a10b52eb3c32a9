import parsePrometheusTextFormat, { type PromFamily } from 'parse-prometheus-text-format';

export type { PromFamily };

/**
 * Prometheus's text format parsed by a library (not by us): throws on a malformed line; and, as
 * the library lets them through, on a value that is not a number and on a last line cut short
 * (no final newline).
 */
export function parseMetrics(text: string): Map<string, PromFamily> {
  if (!text.endsWith('\n')) throw new Error(`metrics text cut short: ...${JSON.stringify(text.slice(-80))}`);
  const families = parsePrometheusTextFormat(text);
  for (const f of families)
    for (const s of f.metrics)
      if (s.value !== undefined && !/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?Inf$|^NaN$/i.test(s.value)) throw new Error(`${f.name}: value ${s.value}`);
  return new Map(families.map((f) => [f.name, f]));
}

/** The value of `name` whose labels include `labels`; undefined when there is none. */
export function metricValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const m = families.get(name)?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  return m?.value === undefined ? undefined : Number(m.value);
}
