/**
 * `pitr-setup`'s check of a running set-up, like pgBackRest's `check`: the server's rows
 * (./server-checks.ts), each target's point-in-time archive, the WAL receiver, and a test switch
 * (`pg_switch_wal()`) whose segment must reach every target within WAL_PUSH_TIMEOUT_SECONDS.
 * It runs no receiver of its own: a check that created the slot would leave the server keeping WAL
 * for a receiver that may never run. It tells how to start the daemon's instead.
 */
import type { App } from '../app';
import { BackupError } from '../errors';
import { lockHolder } from '../lock/file-lock';
import { classifyPgError, connect } from '../pg/connection';
import { sqlRole } from '../pg/privileges';
import { WalArchive } from '../wal/archive';
import { waitForWal } from './base-wal-wait';
import { failed, serverChecks, type PitrCheck, type ServerFacts } from './server-checks';
import { spoolPaths } from './spool';

/** Every row, in order; the switch is tried only when nothing before it is a problem. */
export async function pitrSetupChecks(app: App): Promise<{ rows: PitrCheck[]; facts: ServerFacts | undefined }> {
  const { rows, facts } = await serverChecks(app);
  if (!facts) return { rows, facts };
  for (const t of app.targets) rows.push(await targetCheck(t, facts));
  rows.push(receiverCheck(app));
  const blocked = rows.find((r) => r.status === 'fail');
  rows.push(
    blocked
      ? { check: 'test switch', status: 'warn', detail: `not tried: fix "${blocked.check}" first`, hint: 'Then run pitr-setup again.' }
      : await testSwitch(app, facts),
  );
  return { rows, facts };
}

/** The target's archive can be listed, and holds this cluster's WAL (or none yet). */
async function targetCheck(t: App['targets'][number], f: ServerFacts): Promise<PitrCheck> {
  const check = `target ${t.name}`;
  const archive = new WalArchive(t.name, t.pitr());
  const where = `${t.pitr().root.location}`;
  try {
    await archive.listPrefix('pitr-setup-');
    const id = await archive.identity();
    if (id && id.system_identifier !== f.systemIdentifier) {
      throw new BackupError(
        'WAL_REFUSED',
        `${where} holds the archive of database system ${id.system_identifier}, and this server is system ${f.systemIdentifier}`,
        {
          hint: `Two clusters must not share one archive: give this database entry another name or target, or move ${where} aside if that cluster is gone (its WAL and base backups cannot recover this one).`,
        },
      );
    }
    return {
      check,
      status: 'ok',
      detail: `${where}: ${id ? `the archive of this cluster (system ${id.system_identifier})` : 'no archive yet'}; writing is proven by the test switch`,
    };
  } catch (err) {
    return failed(check, err);
  }
}

/** A receiver runs when the spool's lock is held by a live process (the daemon's, or `wal-receive`). */
function receiverCheck(app: App): PitrCheck {
  const check = 'WAL receiver';
  const holder = lockHolder(spoolPaths(app).lockFile);
  if (holder) return { check, status: 'ok', detail: `${holder.purpose} runs (pid ${holder.pid}, since ${holder.acquired_at})` };
  const off = app.config.pitr.receive ? '' : ' (WAL_RECEIVE is off in this configuration)';
  return {
    check,
    status: 'fail',
    code: 'WAL_ARCHIVING',
    detail: `no WAL receiver runs for ${app.database.name} on this machine (its spool ${spoolPaths(app).dir} is not locked)${off}: nothing is archived`,
    hint: 'Set WAL_RECEIVE=on in the .env and run `pm2 restart basement-backup` (or `basement-backup wal-receive` in another terminal), then run pitr-setup again.',
  };
}

/** Writes a commit (so the switch completes a segment), switches, and waits for that segment on every target. */
async function testSwitch(app: App, f: ServerFacts): Promise<PitrCheck> {
  const check = 'test switch';
  let name: string;
  try {
    const client = await connect(app.database.db);
    try {
      await client.query('SELECT txid_current()');
      name = (await client.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name')).rows[0]!.name;
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch (err) {
    if ((err as { code?: string }).code === '42501') {
      return {
        check,
        status: 'fail',
        code: 'PRIVILEGE',
        detail: `${f.role} may not call pg_switch_wal()`,
        hint: `As a superuser, in the database ${app.database.db.database}: GRANT EXECUTE ON FUNCTION pg_switch_wal() TO ${sqlRole(f.role)};`,
      };
    }
    return failed(check, err instanceof BackupError ? err : classifyPgError(err, app.database.db));
  }
  const started = Date.now();
  const timeoutMs = app.config.pitr.pushTimeoutMs;
  const wait = await waitForWal(app.targets, [name], { timeoutMs, signal: app.signal, what: "pitr-setup's test switch" });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (wait.missing.size === 0)
    return { check, status: 'ok', detail: `${name} reached ${app.targets.map((t) => t.name).join(', ')} ${secs} s after the switch` };
  const lacking = [...wait.missing];
  const errored = lacking.find(([, m]) => m.error);
  const detail = `${name} did not reach ${lacking.map(([t, m]) => `${t.name}${m.error ? ` (asking it failed: ${m.error.message})` : ''}`).join(', ')} within WAL_PUSH_TIMEOUT_SECONDS (${timeoutMs / 1000} s)`;
  return {
    check,
    status: 'fail',
    code: errored ? 'STORAGE' : 'WAL_ARCHIVING',
    detail,
    hint: errored
      ? errored[1].error!.hint
      : "Read the receiver's log (pm2 logs basement-backup, or wal-receive's output): it names why the push fails. A slow target: raise WAL_PUSH_TIMEOUT_SECONDS.",
  };
}
