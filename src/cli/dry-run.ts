import type { App } from '../app';
import type { LoadedConfig } from '../config/types';
import { valueSource } from '../config/env-files';
import { asBackupError } from '../errors';
import { byHandScript, type BackupLocation } from '../restore/by-hand';
import { planRestore } from '../restore/plan';
import type { RestoreRequest } from '../restore/request';
import { printWarning } from './output';

/**
 * `restore --dry-run`: prints the plan and the exact by-hand commands for this configuration
 * and backup as a bash script (stdout), warnings on stderr. Changes nothing and takes no lock.
 */
export async function printRestoreDryRun(app: App, loaded: LoadedConfig, req: Omit<RestoreRequest, 'confirm' | 'onProgress'>): Promise<void> {
  const { config } = app;
  const { plan, warnings } = await planRestore(app, req);
  const target = app.target(req.from);
  const targetConfig = app.database.targets.find((t) => t.name === target.name)!;
  const m = plan.manifest;
  let location: BackupLocation;
  if (targetConfig.type === 'local') {
    const local = (name: string) => target.repo.localPath(name) ?? name;
    location = { kind: 'local', dataPath: local(m.file), rolesPath: m.roles_file ? local(m.roles_file) : undefined };
  } else {
    location = {
      kind: 's3',
      target: targetConfig.name,
      endpoint: targetConfig.endpoint,
      region: targetConfig.region,
      bucket: targetConfig.bucket,
      prefix: targetConfig.prefix,
      accessKeyId: valueSource(loaded.env, targetConfig.accessKeyId, ['S3_ACCESS_KEY_ID']),
      secretAccessKey: valueSource(loaded.env, targetConfig.secretAccessKey, ['S3_SECRET_ACCESS_KEY']),
    };
  }
  let binDir: string | undefined;
  try {
    binDir = (await app.binaries()).dir;
  } catch (err) {
    warnings.push(`the PostgreSQL client tools were not found (${asBackupError(err).message}): the commands below take them from PATH`);
  }
  const password = app.database.db.password === undefined ? undefined : valueSource(loaded.env, app.database.db.password, ['DB_PASSWORD']);
  for (const w of warnings) printWarning(w);
  const planLines = plan.text.split('\n').map((l) => `#   ${l}`);
  process.stdout.write(
    ['# basement-backup restore --dry-run: nothing was changed. The plan:', ...planLines, '#', ''].join('\n') +
      byHandScript({ plan, db: app.database.db, password, location, binDir, pm2Bin: config.pm2Bin, identityFile: config.ageIdentityFile }),
  );
}
