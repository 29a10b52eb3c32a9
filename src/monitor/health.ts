import type { Snapshot } from './snapshot';

/** What /healthz answers: 200 when nothing turns it red, else 503 with the reasons. */
export interface HealthReport {
  status: 200 | 503;
  body: {
    status: 'ok' | 'failing' | 'starting';
    checked_at: string | null;
    reasons: { database: string; target: string | null; title: string; message: string; fix: string }[];
  };
}

/**
 * /healthz from the newest snapshot: red when a finding with `health` is open (no good backup
 * younger than the maximum age on a target, a failed or overdue drill); `starting` (503) when
 * there is no snapshot yet. Pure.
 */
export function healthReport(snapshot: Snapshot | undefined): HealthReport {
  if (!snapshot) return { status: 503, body: { status: 'starting', checked_at: null, reasons: [] } };
  const reasons = snapshot.findings
    .filter((f) => f.health)
    .map((f) => ({ database: f.name, target: f.target, title: f.title, message: f.message, fix: f.fix }));
  return { status: reasons.length ? 503 : 200, body: { status: reasons.length ? 'failing' : 'ok', checked_at: snapshot.taken_at, reasons } };
}
