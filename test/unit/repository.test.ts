import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { backupId, dataFileName, rolesFileName, type Manifest } from '../../src/repository/manifest';
import { LocalStorage } from '../../src/storage/local';
import { Repository, type BackupWriter } from '../../src/repository/repository';

// The order of a backup's objects (data, roles, manifest last; nothing left when it fails) is
// the Repository's: checked here on the local driver, without PostgreSQL.

const DB = 'shop';
const DATA = Buffer.from('not really a dump, but bytes with a checksum');
const ROLES = 'CREATE ROLE shop_app;\n';
const dirs: string[] = [];

function repoIn(name: string, storage?: LocalStorage): Repository {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bb-repo-${name}-`));
  dirs.push(dir);
  return new Repository(storage ?? new LocalStorage(dir, name));
}

/** A local store whose manifests cannot be written. */
class NoManifests extends LocalStorage {
  override async writeAtomic(name: string, data: string | Buffer): Promise<void> {
    if (name.endsWith('.manifest.json')) throw new Error('manifest write refused');
    await super.writeAtomic(name, data);
  }
}

function manifestOf(id: string, data: Buffer = DATA): Manifest {
  return {
    manifest_version: 1,
    id,
    seq: 1,
    file: dataFileName(id, 'custom'),
    database: DB,
    created_at: '2026-01-22T02:00:00.000Z',
    finished_at: '2026-01-22T02:00:01.000Z',
    duration_ms: 1000,
    size_bytes: data.length,
    sha256: crypto.createHash('sha256').update(data).digest('hex'),
    format: 'custom',
    compression: null,
    pg_dump_version: '17.0',
    server_version: '17.0',
    label: null,
    keep_until: null,
    tables: [],
    digest_mode: 'counts',
    table_digests: {},
    roles_file: rolesFileName(id),
    tool: { name: 'basement-backup', version: 'test' },
    host: 'test',
    trigger: 'manual',
  };
}

async function writeData(w: BackupWriter, data: Buffer = DATA): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    w.stream.once('error', reject);
    w.stream.end(data, resolve);
  });
}

/** Everything stored, temporary objects included. */
function files(repo: Repository): string[] {
  return fs.readdirSync(repo.location).sort();
}

afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('Repository.begin', () => {
  const id = backupId(DB, new Date('2026-01-22T02:00:00Z'));

  it('writes the data, then the roles, then the manifest; the backup is good, and abort afterwards changes nothing', async () => {
    const repo = repoIn('local');
    const w = await repo.begin(id, 'custom');
    await writeData(w);
    expect(await w.commitData({ roles: ROLES })).toEqual({});
    expect(await repo.list(DB)).toEqual([]); // no manifest yet: not a backup
    await w.commit(manifestOf(id));
    await w.abort();
    expect(files(repo)).toEqual([`${id}.dump`, `${id}.manifest.json`, `${id}.roles.sql`]);
    expect(await repo.listGood(DB)).toHaveLength(1);
    expect(await repo.readRoles(manifestOf(id))).toBe(ROLES);
  });

  it('abort removes the data and roles already committed, and is safe twice', async () => {
    const repo = repoIn('local');
    const w = await repo.begin(id, 'custom');
    await writeData(w);
    await w.commitData({ roles: ROLES });
    await w.abort();
    await w.abort();
    expect(files(repo)).toEqual([]);
  });

  it('abort before the data is committed leaves nothing, not even a temporary object', async () => {
    const repo = repoIn('local');
    const w = await repo.begin(id, 'custom');
    w.stream.write(DATA);
    await w.abort();
    expect(files(repo)).toEqual([]);
  });

  it('when the manifest cannot be written, the data and roles go too, and the error is thrown', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-repo-nomanifest-'));
    dirs.push(dir);
    const repo = new Repository(new NoManifests(dir, 'local'));
    const w = await repo.begin(id, 'custom');
    await writeData(w);
    await w.commitData({ roles: ROLES });
    await expect(w.commit(manifestOf(id))).rejects.toThrow('manifest write refused');
    expect(files(repo)).toEqual([]);
  });
});

describe('Repository.copyTo', () => {
  const id = backupId(DB, new Date('2026-01-23T02:00:00Z'));

  async function backupIn(repo: Repository, data: Buffer = DATA): Promise<Manifest> {
    const w = await repo.begin(id, 'custom');
    await writeData(w, data);
    await w.commitData({ roles: ROLES });
    const m = manifestOf(id);
    await w.commit(m);
    return m;
  }

  it('copies data, roles and manifest, which records the copy as synced from the source', async () => {
    const source = repoIn('local');
    const dest = repoIn('offsite');
    const m = await backupIn(source);
    await source.copyTo(dest, m);
    expect(files(dest)).toEqual(files(source));
    const [copy] = await dest.listGood(DB);
    expect(copy?.targets?.offsite).toMatchObject({ state: 'synced', from: 'local' });
    expect(await dest.confirmIntact(copy!)).toBeUndefined();
  });

  it('refuses a source whose bytes do not match the manifest, and leaves nothing on the destination', async () => {
    const source = repoIn('local');
    const dest = repoIn('offsite');
    const m = await backupIn(source);
    const changed = Buffer.from(DATA);
    changed[0] = changed[0]! ^ 1;
    fs.writeFileSync(path.join(source.location, m.file), changed);
    await expect(source.copyTo(dest, m)).rejects.toMatchObject({ code: 'DAMAGED' });
    expect(files(dest)).toEqual([]);
  });
});

describe('Repository.rewrite', () => {
  const id = backupId(DB, new Date('2026-01-22T02:00:00Z'));
  const NEW = Buffer.from('the same backup, written anew');

  async function stored(repo: Repository): Promise<Manifest> {
    const w = await repo.begin(id, 'custom');
    await writeData(w);
    await w.commitData({ roles: ROLES });
    await w.commit(manifestOf(id));
    return manifestOf(id);
  }

  it('writes the new objects, swaps the manifest last, then deletes the old objects', async () => {
    const repo = repoIn('rewrite');
    const m = await stored(repo);
    const next = { file: `${id}.key2.dump.age`, roles: `${id}.key2.roles.sql.age` };
    const written = await repo.rewrite(m, next, { stream: Readable.from([NEW]), roles: 'roles, anew', check: () => undefined }, (s) => ({
      ...m,
      file: next.file,
      roles_file: next.roles,
      sha256: s.sha256,
      size_bytes: s.size,
    }));
    expect(files(repo)).toEqual([next.file, `${id}.key2.roles.sql.age`, `${id}.manifest.json`]);
    expect(written.sha256).toBe(crypto.createHash('sha256').update(NEW).digest('hex'));
    expect((await repo.listGood(DB))[0]).toMatchObject({ file: next.file, size_bytes: NEW.length });
    expect(await repo.readRoles(written)).toBe('roles, anew');
  });

  it('when the check fails, the backup stays exactly as it was and nothing new is left', async () => {
    const repo = repoIn('rewrite-fail');
    const m = await stored(repo);
    const before = files(repo);
    const check = () => {
      throw new Error('does not match');
    };
    await expect(repo.rewrite(m, { file: `${id}.key2.dump.age`, roles: null }, { stream: Readable.from([NEW]), check }, () => m)).rejects.toThrow(
      'does not match',
    );
    expect(files(repo)).toEqual(before);
  });

  it('when the new object cannot be created, the stream that would feed it is let go', async () => {
    class NoWriter extends LocalStorage {
      override createWriter(): never {
        throw new Error('disk gone');
      }
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-repo-nowrite-'));
    dirs.push(dir);
    const repo = new Repository(new NoWriter(dir, 'nowrite'));
    const m = manifestOf(id);
    const feed = Readable.from([NEW]);
    await expect(repo.rewrite(m, { file: `${id}.key2.dump.age`, roles: null }, { stream: feed, check: () => undefined }, () => m)).rejects.toThrow('disk gone');
    expect(feed.destroyed).toBe(true);
  });

  it('objects of a backup its manifest does not name (a rewrite cut short) are orphans, removed like any other', async () => {
    const repo = repoIn('rewrite-orphan');
    await stored(repo);
    fs.writeFileSync(path.join(repo.location, `${id}.key2.dump.age`), 'cut short');
    const listing = await repo.scan(DB);
    expect(listing.backups).toHaveLength(1);
    expect(listing.orphans.map((o) => o.name)).toEqual([`${id}.key2.dump.age`]);
    await repo.removeOrphans(DB, listing, new Date());
    expect(files(repo)).toEqual([`${id}.dump`, `${id}.manifest.json`, `${id}.roles.sql`]);
  });
});
