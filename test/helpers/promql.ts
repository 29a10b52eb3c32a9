import { parser } from '@prometheus-io/lezer-promql';
import type { PromFamily } from './prom';

/**
 * PromQL parsed by the Prometheus project's own grammar (@prometheus-io/lezer-promql, what the
 * Prometheus UI parses queries with), and a minimal evaluator for the shapes the shipped alert
 * rules use: instant vector selectors with `=` matchers, numbers, `time()`, parentheses,
 * arithmetic, comparisons (filtering), `on(…) group_left` / `ignoring(…)` matching and `or`.
 * Anything else throws, so a rule that outgrows it fails its test instead of passing untested.
 */

export interface Series {
  labels: Record<string, string>;
  value: number;
}

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

type Value = { scalar: number } | { vector: Series[] };

/** The syntax tree, or throws naming the first error position. */
export function parsePromQL(expr: string): SyntaxNode {
  const tree = parser.parse(expr);
  tree.iterate({
    enter: (n) => {
      if (n.type.isError) throw new Error(`PromQL syntax error at ${n.from} in: ${expr}`);
    },
  });
  return tree.topNode;
}

/** The metric names an expression selects (every vector selector's name). */
export function metricNames(expr: string): string[] {
  return selectors(expr).map((s) => s.name);
}

/** Every vector selector of an expression: its metric name and its label matchers as written. */
export function selectors(expr: string): { name: string; matchers: string }[] {
  const found: { name: string; matchers: string }[] = [];
  parser.parse(expr).iterate({
    enter: (n) => {
      if (n.name === 'VectorSelector') {
        const id = n.node.getChild('Identifier');
        const m = n.node.getChild('LabelMatchers');
        if (id) found.push({ name: expr.slice(id.from, id.to), matchers: m ? expr.slice(m.from, m.to) : '' });
      }
    },
  });
  return found;
}

/** Parsed families as a scrape stores them: each sample with `__name__` and the target's `instance` and `job`. */
export function scraped(families: Map<string, PromFamily>, target: Record<string, string>): Series[] {
  return [...families.values()].flatMap((f) =>
    f.metrics.filter((m) => m.value !== undefined).map((m) => ({ labels: { __name__: f.name, ...target, ...m.labels }, value: Number(m.value) })),
  );
}

/** Evaluates `expr` at `timeSeconds` over `data`: the series the alert would fire for. */
export function evaluate(expr: string, data: Series[], timeSeconds: number): Series[] {
  const top = parsePromQL(expr);
  const v = evalNode(top.firstChild!, expr, data, timeSeconds);
  if ('scalar' in v) throw new Error(`${expr} is a scalar, not a vector`);
  return v.vector;
}

function text(n: SyntaxNode, expr: string): string {
  return expr.slice(n.from, n.to);
}

function evalNode(n: SyntaxNode, expr: string, data: Series[], now: number): Value {
  switch (n.name) {
    case 'NumberDurationLiteral':
      return { scalar: Number(text(n, expr)) };
    case 'ParenExpr':
      return evalNode(n.firstChild!, expr, data, now);
    case 'FunctionCall':
      if (text(n, expr).replace(/\s/g, '') === 'time()') return { scalar: now };
      break;
    case 'VectorSelector':
      return { vector: select(n, expr, data) };
    case 'BinaryExpr':
      return binary(n, expr, data, now);
  }
  throw new Error(`the test's PromQL evaluator does not know ${n.name}: ${text(n, expr)}`);
}

function select(n: SyntaxNode, expr: string, data: Series[]): Series[] {
  const name = text(n.getChild('Identifier')!, expr);
  const matchers = (n.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []).map((m) => {
    if (!m.getChild('MatchOp')?.getChild('EqlSingle')) throw new Error(`only = matchers: ${text(m, expr)}`);
    return [text(m.getChild('LabelName')!, expr), JSON.parse(text(m.getChild('StringLiteral')!, expr)) as string] as const;
  });
  return data.filter((s) => s.labels.__name__ === name && matchers.every(([k, v]) => s.labels[k] === v));
}

const ARITH: Record<string, (a: number, b: number) => number> = { Add: (a, b) => a + b, Sub: (a, b) => a - b, Mul: (a, b) => a * b, Div: (a, b) => a / b };
const CMP: Record<string, (a: number, b: number) => boolean> = {
  Gtr: (a, b) => a > b,
  Lss: (a, b) => a < b,
  Gte: (a, b) => a >= b,
  Lte: (a, b) => a <= b,
  EqlSingle: (a, b) => a === b,
  Neq: (a, b) => a !== b,
};

function binary(n: SyntaxNode, expr: string, data: Series[], now: number): Value {
  const [left, op, ...rest] = childrenOf(n);
  const modifier = rest[0]?.name === 'MatchingModifierClause' ? rest.shift() : undefined;
  const l = evalNode(left!, expr, data, now);
  const r = evalNode(rest[0]!, expr, data, now);
  const o = op!.name;
  if (o === 'Or') return { vector: [...vec(l), ...vec(r).filter((s) => !vec(l).some((x) => sameLabels(x.labels, s.labels)))] };
  const fn = ARITH[o] ?? CMP[o];
  if (!fn) throw new Error(`operator ${o}`);
  const apply = (a: number, b: number, keep: Series): Series | undefined => {
    if (o in CMP) return CMP[o]!(a, b) ? keep : undefined;
    const labels = Object.fromEntries(Object.entries(keep.labels).filter(([k]) => k !== '__name__'));
    return { labels, value: ARITH[o]!(a, b) };
  };
  if ('scalar' in l && 'scalar' in r) return { scalar: ARITH[o]!(l.scalar, r.scalar) };
  if ('scalar' in r) return { vector: vec(l).flatMap((s) => apply(s.value, r.scalar, s) ?? []) };
  if ('scalar' in l) return { vector: vec(r).flatMap((s) => apply(l.scalar, s.value, s) ?? []) };
  const key = matchKey(modifier, expr);
  return {
    vector: vec(l).flatMap((s) => {
      const matches = vec(r).filter((x) => key(x.labels) === key(s.labels));
      if (matches.length > 1) throw new Error(`many-to-many match in ${expr}`);
      return matches.length === 1 ? (apply(s.value, matches[0]!.value, s) ?? []) : [];
    }),
  };
}

function childrenOf(n: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = n.firstChild; c; c = c.nextSibling) out.push(c);
  return out;
}

function vec(v: Value): Series[] {
  if ('scalar' in v) throw new Error('expected a vector');
  return v.vector;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((k) => a[k] === b[k]);
}

/** The labels two sides are matched on: on(…), ignoring(…), or all but the name. */
function matchKey(modifier: SyntaxNode | undefined, expr: string): (labels: Record<string, string>) => string {
  const names = (modifier?.getChild('GroupingLabels')?.getChildren('LabelName') ?? []).map((l) => text(l, expr));
  const on = modifier !== undefined && modifier.getChild('On') !== null;
  return (labels) =>
    JSON.stringify(
      Object.entries(labels)
        .filter(([k]) => k !== '__name__' && (on ? names.includes(k) : !names.includes(k)))
        .sort(),
    );
}
