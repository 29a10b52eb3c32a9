import type pg from 'pg';
import type { DbConfig } from '../config/types';
import { BackupError } from '../errors';
import { formatWait } from '../util/format';
import { classifyPgError, connect } from './connection';

/** Our sessions on the server: those of a child (by its application_name) and our own connections (by pid). */
export interface OurSessions {
  appName: string;
  pids?: number[];
}

/** What the server says our sessions are doing, asked when a child has shown no progress. */
export interface SessionDiagnosis {
  /**
   * The server is executing a statement for one of the sessions and waits for nothing outside
   * it (an index build, say): the silence is work, not a stall.
   */
  busy: boolean;
  /** What they wait for, in words: "a lock on public.users held by pid 1234 (…)". */
  waitingFor?: string;
  /** A pid that blocks them, for the hint. */
  blockerPid?: number;
  /** Otherwise, what was seen: "its session on the server is idle, waiting for the client". */
  seen?: string;
}

interface SessionRow {
  pid: number;
  state: string | null;
  wait_event_type: string | null;
  wait_event: string | null;
  blockers: number[];
  lock: string | null;
}

interface BlockerRow {
  pid: number;
  usename: string | null;
  application_name: string | null;
  client_addr: string | null;
  state: string | null;
  state_change: Date | null;
  query: string | null;
}

// The object a session waits for: a table of this database by name, anything else by its kind.
const SESSIONS_SQL = `
  SELECT a.pid, a.state, a.wait_event_type, a.wait_event, pg_blocking_pids(a.pid) AS blockers,
         (SELECT CASE WHEN l.locktype = 'relation' AND c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname)
                      WHEN l.locktype = 'relation' THEN 'relation ' || l.relation || ' of another database'
                      WHEN l.locktype = 'object' AND l.classid = 'pg_authid'::regclass THEN 'role ' || coalesce(pg_get_userbyid(l.objid), l.objid::text)
                      WHEN l.locktype = 'object' AND l.classid = 'pg_database'::regclass THEN 'database ' || coalesce((SELECT datname FROM pg_database WHERE oid = l.objid), l.objid::text)
                      ELSE l.locktype END
            FROM pg_locks l
            LEFT JOIN pg_class c ON l.locktype = 'relation' AND c.oid = l.relation
                                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE l.pid = a.pid AND NOT l.granted
           LIMIT 1) AS lock
    FROM pg_stat_activity a
   WHERE (a.application_name = $1 OR a.pid = ANY($2::int[])) AND a.pid <> pg_backend_pid()
   ORDER BY a.application_name = $1 DESC, a.pid`;

const BLOCKERS_SQL = `
  SELECT pid, usename, application_name, host(client_addr) AS client_addr, state, state_change, left(query, 200) AS query
    FROM pg_stat_activity WHERE pid = ANY($1::int[]) ORDER BY pid`;

/** Waits that the server cannot finish on its own. */
function waiting(s: SessionRow): boolean {
  if (s.state !== 'active') return true;
  if (s.wait_event_type === 'Lock' || s.wait_event_type === 'Client' || s.wait_event_type === 'BufferPin') return true;
  return s.wait_event === 'SyncRep';
}

function describeBlocker(b: BlockerRow | undefined, pid: number): string {
  if (!b) return `pid ${pid}`;
  if (b.state === null) return `pid ${pid} (details hidden: grant pg_read_all_stats to see other users' sessions)`;
  const parts = [`application ${b.application_name || '(none)'}`, `user ${b.usename ?? '?'}`];
  if (b.client_addr) parts.push(`from ${b.client_addr}`);
  parts.push(b.state_change ? `${b.state} since ${b.state_change.toISOString()}` : b.state);
  if (b.query) parts.push(`last query: ${b.query.replace(/\s+/g, ' ').trim()}`);
  return `pid ${pid} (${parts.join(', ')})`;
}

async function diagnoseWith(client: pg.Client, ours: OurSessions, what: string): Promise<SessionDiagnosis> {
  const sessions = (await client.query<SessionRow>(SESSIONS_SQL, [ours.appName, ours.pids ?? []])).rows;
  if (sessions.length === 0) return { busy: false, seen: `${what} has no session on the server: it is not connected (network, or stuck before connecting)` };
  const ourPids = new Set(sessions.map((s) => s.pid));
  const locked = sessions.find((s) => s.wait_event_type === 'Lock');
  if (locked) {
    const outside = locked.blockers.filter((p) => !ourPids.has(p));
    const blockerPids = outside.length > 0 ? outside : locked.blockers;
    const rows = (await client.query<BlockerRow>(BLOCKERS_SQL, [blockerPids])).rows;
    const held = blockerPids
      .map((p) =>
        describeBlocker(
          rows.find((r) => r.pid === p),
          p,
        ),
      )
      .join('; ');
    const on = locked.lock ?? 'an object';
    return {
      busy: false,
      waitingFor: `a lock on ${on}${held ? ` held by ${held}` : ''}`,
      blockerPid: outside[0] ?? blockerPids[0],
    };
  }
  if (!sessions.every(waiting)) return { busy: true };
  const s = sessions[0]!;
  if (s.wait_event === 'SyncRep') return { busy: false, waitingFor: 'a synchronous standby to confirm a commit (synchronous_standby_names)' };
  if (s.wait_event === 'ClientWrite')
    return {
      busy: false,
      seen: `the server waits for ${what} to read its output, which waits for its own output to be taken (a storage target not accepting data?)`,
    };
  return {
    busy: false,
    seen: `its session on the server is ${s.state ?? 'idle'}, waiting for ${what}: the connection between them may be broken (network, firewall)`,
  };
}

/**
 * Asks the server what our sessions (`ours`) are doing: whether they wait for a lock, and whose,
 * or for their client. Connects to `database` on `db` (to name tables of that database) and gives
 * up after `deadlineMs`.
 */
export async function diagnoseSessions(db: DbConfig, database: string, ours: OurSessions, what: string, deadlineMs = 15_000): Promise<SessionDiagnosis> {
  return withClient(db, database, deadlineMs, (c) => diagnoseWith(c, ours, what));
}

/**
 * Ends the sessions of a stopped child, found by its application_name, on `db`'s server (from a
 * connection to `database`), so that they stop queueing for locks; with `cancelPid`, first
 * cancels that session's running query (the backup's snapshot connection, reading digests).
 * Gives up after `deadlineMs`; never throws.
 */
export async function stopSessions(db: DbConfig, database: string, appName: string, opts: { cancelPid?: number; deadlineMs?: number } = {}): Promise<void> {
  await withClient(db, database, opts.deadlineMs ?? 15_000, async (c) => {
    if (opts.cancelPid !== undefined) await c.query('SELECT pg_cancel_backend($1)', [opts.cancelPid]);
    await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [appName]);
  }).catch(() => undefined);
}

/** Runs `fn` on a short-lived connection that gives up after `deadlineMs`. */
async function withClient<T>(db: DbConfig, database: string, deadlineMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  let client: pg.Client | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${Math.round(deadlineMs / 1000)} s`)), deadlineMs);
  });
  // Closing is not awaited: a server that stopped answering must not hold us up here too.
  const close = (c: pg.Client) => void c.end().catch(() => undefined);
  try {
    return await Promise.race([
      (async () => {
        const c = await connect(db, database);
        if (done) close(c);
        else client = c;
        return fn(c);
      })(),
      deadline,
    ]);
  } finally {
    done = true;
    clearTimeout(timer);
    if (client) close(client);
  }
}

const EXCLUSIVE_SQL = `
  SELECT l.pid, format('%I.%I', n.nspname, c.relname) AS rel
    FROM pg_locks l
    JOIN pg_class c ON c.oid = l.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND l.pid <> pg_backend_pid()
   ORDER BY l.pid, 2`;

/**
 * A failed query of ours, classified; for a lock timeout (lock_timeout set to the stall time),
 * a STALLED error naming who holds ACCESS EXCLUSIVE locks in the database now.
 */
export async function explainQueryError(err: unknown, db: DbConfig, what: string, waitedMs: number): Promise<BackupError> {
  if ((err as { code?: string }).code !== '55P03') return classifyPgError(err, db);
  let held = '';
  let blocker: number | undefined;
  try {
    held = await withClient(db, db.database, 15_000, async (c) => {
      const locks = (await c.query<{ pid: number; rel: string }>(EXCLUSIVE_SQL)).rows;
      if (locks.length === 0) return '';
      blocker = locks[0]!.pid;
      const rows = (await c.query<BlockerRow>(BLOCKERS_SQL, [[...new Set(locks.map((l) => l.pid))]])).rows;
      return locks
        .map(
          (l) =>
            `${l.rel} held by ${describeBlocker(
              rows.find((r) => r.pid === l.pid),
              l.pid,
            )}`,
        )
        .join('; ');
    });
  } catch {
    // the timeout itself is reported
  }
  return new BackupError('STALLED', `${what} waited ${formatWait(waitedMs)} (BACKUP_STALL_MINUTES) for a lock${held ? ` on ${held}` : ''}`, {
    hint: `End the blocking transaction (COMMIT or ROLLBACK it in its application${blocker ? `, or SELECT pg_terminate_backend(${blocker})` : ''}), and keep migrations' transactions short or run them outside the backup schedule; then retry.`,
    cause: err,
  });
}
