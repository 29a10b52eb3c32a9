import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeConfig, loadConfig, parseConfig } from '../../src/config';
import type { S3TargetConfig } from '../../src/config/types';
import { ConfigError } from '../../src/errors';
import { clearSecrets, redact } from '../../src/redact';
import { clearSecretsAroundEachTest, tempDir } from '../helpers/temp';

const CWD = '/srv/app';
const BASE = { DB_NAME: 'webserver_db' };
/** Retention rules as the config reads them: the GFS counts 0 unless given. */
const rules = (days: number, minCount: number, gfs: { daily?: number; weekly?: number; monthly?: number; yearly?: number } = {}) => ({
  days,
  minCount,
  daily: 0,
  weekly: 0,
  monthly: 0,
  yearly: 0,
  ...gfs,
});
const KEY_ID = 'AKIAKEYIDNEVERSHOWN1';
const SECRET = 'S3-secret/never+shown=9q';
const S3_ENV = {
  S3_ENDPOINT: 'https://fra1.digitaloceanspaces.com',
  S3_REGION: 'fra1',
  S3_BUCKET: 'my-backups',
  S3_ACCESS_KEY_ID: KEY_ID,
  S3_SECRET_ACCESS_KEY: SECRET,
};

const tmp = () => tempDir('bb-targets-');
clearSecretsAroundEachTest();

/** parseConfig that must fail: the thrown ConfigError, with every problem in `all`. */
function configError(vars: Record<string, string | undefined>, cwd = CWD): ConfigError & { all: ConfigError[] } {
  try {
    parseConfig(vars, cwd);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError & { all: ConfigError[] };
    expect(e.all[0]).toBe(e);
    expect(e.code).toBe('CONFIG');
    return e;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(vars)}`);
}

/** Every message and hint of a failed parse, as one text. */
function allText(e: ConfigError & { all: ConfigError[] }): string {
  return e.all.map((x) => `${x.message}\n${x.hint ?? ''}`).join('\n');
}

function s3(targets: unknown[], i: number): S3TargetConfig {
  const t = targets[i] as S3TargetConfig;
  expect(t.type).toBe('s3');
  return t;
}

describe('targets from the environment', () => {
  it('default: local storage only, in BACKUP_DIR, with the backup retention', () => {
    const c = parseConfig({ ...BASE, BACKUP_RETENTION_DAYS: '14', BACKUP_RETENTION_MIN_COUNT: '3' }, CWD).databases[0]!;
    expect(c.targets).toEqual([{ name: 'local', type: 'local', path: '/srv/app/backups', setting: 'BACKUP_DIR', retention: rules(14, 3) }]);
    expect(parseConfig({ ...BASE, BACKUP_DIR: 'b', BACKUP_LOCAL: 'true' }, CWD).databases[0]!.targets).toEqual([
      { name: 'local', type: 'local', path: '/srv/app/b', setting: 'BACKUP_DIR', retention: rules(7, 7) },
    ]);
  });

  it('BACKUP_LOCAL=false with no other target is an error naming BACKUP_LOCAL', () => {
    const e = configError({ ...BASE, BACKUP_LOCAL: 'false' });
    expect(e.variable).toBe('BACKUP_LOCAL');
    expect(e.message).toMatch(/BACKUP_LOCAL: is false and no other storage target/);
    expect(e.hint).toMatch(/S3_BUCKET/);
    expect(configError({ ...BASE, BACKUP_LOCAL: 'maybe' }).variable).toBe('BACKUP_LOCAL');
  });

  it('an S3 target with every setting; BACKUP_LOCAL=false leaves it alone', () => {
    const c = parseConfig(
      { ...BASE, ...S3_ENV, S3_PREFIX: 'basement', S3_FORCE_PATH_STYLE: 'true', S3_PART_SIZE_MB: '16', S3_TIMEOUT_SECONDS: '12', BACKUP_LOCAL: 'false' },
      CWD,
    ).databases[0]!;
    expect(c.targets).toEqual([
      {
        name: 's3',
        type: 's3',
        endpoint: 'https://fra1.digitaloceanspaces.com',
        region: 'fra1',
        bucket: 'my-backups',
        prefix: 'basement/',
        accessKeyId: KEY_ID,
        secretAccessKey: SECRET,
        forcePathStyle: true,
        partSizeBytes: 16 * 1024 * 1024,
        timeoutSeconds: 12,
        retention: rules(7, 7),
      },
    ]);
  });

  it('S3 defaults: AWS (no endpoint), us-east-1, bucket root, virtual-host style, 8 MiB parts, 30 s deadline, after the local target', () => {
    const c = parseConfig({ ...BASE, S3_BUCKET: 'b', S3_ACCESS_KEY_ID: KEY_ID, S3_SECRET_ACCESS_KEY: SECRET }, CWD).databases[0]!;
    expect(c.targets.map((t) => t.name)).toEqual(['local', 's3']);
    const t = s3(c.targets, 1);
    expect(t.endpoint).toBeUndefined();
    expect(t.region).toBe('us-east-1');
    expect(t.prefix).toBe('');
    expect(t.forcePathStyle).toBe(false);
    expect(t.partSizeBytes).toBe(8 * 1024 * 1024);
    expect(t.timeoutSeconds).toBe(30);
  });

  it.each(['0', '3601', '2.5', 'soon'])('S3_TIMEOUT_SECONDS=%s is an error naming it and the range', (value) => {
    const e = configError({ ...BASE, ...S3_ENV, S3_TIMEOUT_SECONDS: value });
    expect(e.variable).toBe('S3_TIMEOUT_SECONDS');
    expect(e.message).toBe(`S3_TIMEOUT_SECONDS: "${value}" is not a whole number from 1 to 3600`);
    expect(e.hint).toMatch(/without an answer or progress/);
  });

  it('S3_BUCKET without keys: errors naming S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY', () => {
    const e = configError({ ...BASE, S3_BUCKET: 'b' });
    expect(e.all.map((x) => x.variable)).toEqual(['S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']);
    expect(e.message).toMatch(/S3_ACCESS_KEY_ID: is not set but S3_BUCKET is/);
    expect(configError({ ...BASE, S3_BUCKET: 'b', S3_ACCESS_KEY_ID: KEY_ID }).variable).toBe('S3_SECRET_ACCESS_KEY');
    const onlySecret = configError({ ...BASE, S3_BUCKET: 'b', S3_SECRET_ACCESS_KEY: SECRET });
    expect(onlySecret.all.map((x) => x.variable)).toEqual(['S3_ACCESS_KEY_ID']);
    expect(allText(onlySecret)).not.toContain(SECRET);
  });

  it.each(['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY', 'S3_PREFIX', 'S3_REGION', 'S3_TIMEOUT_SECONDS'])(
    '%s without S3_BUCKET is an error naming S3_BUCKET',
    (name) => {
      const e = configError({ ...BASE, [name]: name === 'S3_ENDPOINT' ? 'https://s3.example.com' : 'some-value' });
      expect(e.variable).toBe('S3_BUCKET');
      expect(e.message).toBe(`S3_BUCKET: is not set but ${name} is`);
    },
  );

  it.each(['fra1.digitaloceanspaces.com', 'ftp://s3.example.com', 'https://', 'not a url'])('S3_ENDPOINT=%s is not an http(s) URL', (endpoint) => {
    const e = configError({ ...BASE, ...S3_ENV, S3_ENDPOINT: endpoint });
    expect(e.variable).toBe('S3_ENDPOINT');
    expect(e.message).toContain('is not an http(s) URL');
    expect(allText(e)).not.toContain(SECRET);
  });

  it('accepts http endpoints with a port (MinIO on loopback)', () => {
    expect(s3(parseConfig({ ...BASE, ...S3_ENV, S3_ENDPOINT: 'http://127.0.0.1:9000' }, CWD).databases[0]!.targets, 1).endpoint).toBe('http://127.0.0.1:9000');
  });

  it('S3_RETENTION_DAYS and S3_RETENTION_MIN_COUNT override the backup retention for the S3 target only', () => {
    const vars = { ...BASE, ...S3_ENV, BACKUP_RETENTION_DAYS: '7', S3_RETENTION_DAYS: '90' };
    let c = parseConfig(vars, CWD).databases[0]!;
    expect(c.targets.map((t) => t.retention)).toEqual([rules(7, 7), rules(90, 7)]);
    c = parseConfig({ ...vars, S3_RETENTION_MIN_COUNT: '30' }, CWD).databases[0]!;
    expect(c.targets[1]!.retention).toEqual(rules(90, 30));
    // the GFS counts apply to both
    c = parseConfig({ ...vars, BACKUP_KEEP_DAILY: '7', BACKUP_KEEP_YEARLY: '3' }, CWD).databases[0]!;
    expect(c.targets.map((t) => t.retention)).toEqual([rules(7, 7, { daily: 7, yearly: 3 }), rules(90, 7, { daily: 7, yearly: 3 })]);
    expect(configError({ ...vars, S3_RETENTION_DAYS: '0' }).variable).toBe('S3_RETENTION_DAYS');
    expect(configError({ ...vars, S3_RETENTION_MIN_COUNT: 'x' }).variable).toBe('S3_RETENTION_MIN_COUNT');
  });

  it('S3_PART_SIZE_MB below 5 (the S3 minimum) is an error', () => {
    const e = configError({ ...BASE, ...S3_ENV, S3_PART_SIZE_MB: '4' });
    expect(e.variable).toBe('S3_PART_SIZE_MB');
    expect(e.hint).toMatch(/5 to 5000/);
  });

  it('S3_FORCE_PATH_STYLE must be true or false', () => {
    expect(configError({ ...BASE, ...S3_ENV, S3_FORCE_PATH_STYLE: 'sometimes' }).variable).toBe('S3_FORCE_PATH_STYLE');
  });

  it.each([
    ['', ''],
    ['/', ''],
    ['backups', 'backups/'],
    ['backups/', 'backups/'],
    ['/backups', 'backups/'],
    ['///backups/db', 'backups/db/'],
    ['  backups  ', 'backups/'],
  ])('S3_PREFIX %j is stored as %j', (raw, prefix) => {
    expect(s3(parseConfig({ ...BASE, ...S3_ENV, S3_PREFIX: raw }, CWD).databases[0]!.targets, 1).prefix).toBe(prefix);
  });

  it('registers the S3 keys as secrets: redact() masks them, and no ConfigError shows them', () => {
    expect(redact(`key ${KEY_ID} secret ${SECRET}`)).toBe(`key ${KEY_ID} secret ${SECRET}`);
    parseConfig({ ...BASE, ...S3_ENV }, CWD);
    expect(redact(`key ${KEY_ID} secret ${SECRET}`)).toBe('key *** secret ***');
    clearSecrets();
    const e = configError({ ...BASE, ...S3_ENV, S3_ENDPOINT: 'nope', S3_PART_SIZE_MB: 'x', BACKUP_FORMAT: 'zip' });
    expect(e.all.length).toBeGreaterThanOrEqual(3);
    expect(allText(e)).not.toContain(SECRET);
    expect(allText(e)).not.toContain(KEY_ID);
    // registered even when the configuration is rejected, so the alert about it is redacted too
    expect(redact(SECRET)).toBe('***');
  });

  it('describeConfig shows the S3 keys as *** and the other S3 settings as they are', () => {
    const dir = tmp();
    const rows = describeConfig(loadConfig([], { ...BASE, ...S3_ENV, S3_RETENTION_DAYS: '90' }, dir));
    const row = (name: string) => rows.find((r) => r.variable === name)!;
    expect(row('S3_SECRET_ACCESS_KEY')).toEqual({ variable: 'S3_SECRET_ACCESS_KEY', value: '***', source: 'environment' });
    expect(row('S3_ACCESS_KEY_ID').value).toBe('***');
    expect(row('S3_BUCKET').value).toBe('my-backups');
    expect(row('S3_RETENTION_DAYS').value).toBe('90');
    expect(row('S3_PREFIX')).toEqual({ variable: 'S3_PREFIX', value: '(bucket root)', source: 'default' });
    expect(JSON.stringify(rows)).not.toContain(SECRET);
    expect(JSON.stringify(rows)).not.toContain(KEY_ID);
  });
});

describe('targets from BACKUP_CONFIG_FILE', () => {
  const ENV = { ...BASE, SPACES_KEY: 'spaces-key-id-1', SPACES_SECRET: 'spaces-secret-never-shown', B2_SECRET: 'b2-secret-never-shown' };

  function configFile(name: string, text: string): { dir: string; vars: Record<string, string> } {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, name), text);
    return { dir, vars: { ...ENV, BACKUP_CONFIG_FILE: name } };
  }

  function fileError(name: string, text: string, extra: Record<string, string | undefined> = {}): ConfigError & { all: ConfigError[] } {
    const { dir, vars } = configFile(name, text);
    const e = configError({ ...vars, ...extra }, dir);
    expect(e.variable).toBe('BACKUP_CONFIG_FILE');
    expect(e.message).toContain(path.join(dir, name));
    expect(allText(e)).not.toContain(ENV.SPACES_SECRET);
    return e;
  }

  const YAML_FILE = `# two buckets in two regions, and a short local history
targets:
  - { name: local, type: local, path: ./backups, retention: { days: 7, min_count: 3 } }
  - name: spaces-fra1
    type: s3
    endpoint: https://fra1.digitaloceanspaces.com
    region: fra1
    bucket: my-backups
    prefix: /basement
    access_key_id: \${SPACES_KEY}
    secret_access_key: \${SPACES_SECRET}
    force_path_style: false
    part_size_mb: 16
    timeout_seconds: 45
    retention: { days: 90, monthly: 12, weekly: 0 }
  - name: b2
    type: s3
    endpoint: https://s3.eu-central-003.backblazeb2.com
    region: eu-central-003
    bucket: other-backups
    access_key_id: "00312345"
    secret_access_key: "prefix-\${B2_SECRET}"
`;

  function expectTwoBuckets(targets: unknown[], dir: string): void {
    expect((targets as { name: string }[]).map((t) => t.name)).toEqual(['local', 'spaces-fra1', 'b2']);
    expect(targets[0]).toEqual({
      name: 'local',
      type: 'local',
      path: path.join(dir, 'backups'),
      setting: 'BACKUP_CONFIG_FILE target "local" path',
      // BACKUP_KEEP_WEEKLY=4 applies where the file does not say
      retention: rules(7, 3, { weekly: 4 }),
    });
    expect(targets[1]).toEqual({
      name: 'spaces-fra1',
      type: 's3',
      endpoint: 'https://fra1.digitaloceanspaces.com',
      region: 'fra1',
      bucket: 'my-backups',
      prefix: 'basement/',
      accessKeyId: 'spaces-key-id-1',
      secretAccessKey: 'spaces-secret-never-shown',
      forcePathStyle: false,
      partSizeBytes: 16 * 1024 * 1024,
      timeoutSeconds: 45,
      // days and the GFS counts from the file, min_count from BACKUP_RETENTION_MIN_COUNT
      retention: rules(90, 5, { monthly: 12, weekly: 0 }),
    });
    const b2 = s3(targets, 2);
    expect(b2.prefix).toBe('');
    expect(b2.accessKeyId).toBe('00312345');
    expect(b2.secretAccessKey).toBe('prefix-b2-secret-never-shown');
    expect(b2.partSizeBytes).toBe(8 * 1024 * 1024);
    expect(b2.timeoutSeconds).toBe(30);
    expect(b2.retention).toEqual(rules(10, 5, { weekly: 4 }));
  }

  it('YAML: two S3 targets and local, with names, per-target retention and ${VAR} substitution', () => {
    const { dir, vars } = configFile('targets.yml', YAML_FILE);
    const c = parseConfig({ ...vars, BACKUP_RETENTION_DAYS: '10', BACKUP_RETENTION_MIN_COUNT: '5', BACKUP_KEEP_WEEKLY: '4' }, dir).databases[0]!;
    expectTwoBuckets(c.targets, dir);
    // the secrets taken from the file are registered for redaction
    expect(redact('spaces-secret-never-shown prefix-b2-secret-never-shown spaces-key-id-1')).toBe('*** *** ***');
  });

  it('JSON: the same targets', () => {
    const json = {
      targets: [
        { name: 'local', type: 'local', path: './backups', retention: { days: 7, min_count: 3 } },
        {
          name: 'spaces-fra1',
          type: 's3',
          endpoint: 'https://fra1.digitaloceanspaces.com',
          region: 'fra1',
          bucket: 'my-backups',
          prefix: '/basement',
          access_key_id: '${SPACES_KEY}',
          secret_access_key: '${SPACES_SECRET}',
          force_path_style: false,
          part_size_mb: 16,
          timeout_seconds: 45,
          retention: { days: 90, monthly: 12, weekly: 0 },
        },
        {
          name: 'b2',
          type: 's3',
          endpoint: 'https://s3.eu-central-003.backblazeb2.com',
          region: 'eu-central-003',
          bucket: 'other-backups',
          access_key_id: '00312345',
          secret_access_key: 'prefix-${B2_SECRET}',
        },
      ],
    };
    const { dir, vars } = configFile('targets.json', JSON.stringify(json, null, 2));
    const c = parseConfig({ ...vars, BACKUP_RETENTION_DAYS: '10', BACKUP_RETENTION_MIN_COUNT: '5', BACKUP_KEEP_WEEKLY: '4' }, dir).databases[0]!;
    expectTwoBuckets(c.targets, dir);
  });

  it('the file replaces the environment targets: no local target unless listed, BACKUP_LOCAL is not consulted', () => {
    const { dir, vars } = configFile('t.json', JSON.stringify({ targets: [{ name: 'only', type: 'local', path: '/var/backups/x' }] }));
    const c = parseConfig({ ...vars, BACKUP_LOCAL: 'false' }, dir).databases[0]!;
    expect(c.targets).toEqual([
      { name: 'only', type: 'local', path: '/var/backups/x', setting: 'BACKUP_CONFIG_FILE target "only" path', retention: rules(7, 7) },
    ]);
    const abs = parseConfig({ ...BASE, BACKUP_CONFIG_FILE: path.join(dir, 't.json') }, '/elsewhere').databases[0]!;
    expect(abs.targets[0]!.name).toBe('only');
  });

  it('an unset ${VAR} is an error naming the target, the field and the variable', () => {
    const e = fileError('t.yml', YAML_FILE.replace('${SPACES_SECRET}', '${SPACES_SECRET_TYPO}'));
    expect(e.message).toContain('targets[1]');
    expect(e.message).toContain('"secret_access_key" refers to ${SPACES_SECRET_TYPO}, which is not set');
    expect(e.hint).toMatch(/Set SPACES_SECRET_TYPO/);
  });

  it.each([
    ['an unknown setting in a target', { targets: [{ name: 'a', type: 'local', path: '/b', pth: '/c' }] }, /targets\[0\]: unknown setting "pth"/],
    ['an S3 setting on a local target', { targets: [{ name: 'a', type: 'local', path: '/b', bucket: 'x' }] }, /unknown setting "bucket"/],
    ['an unknown top-level setting', { targets: [{ name: 'a', type: 'local', path: '/b' }], target: [] }, /unknown setting "target"/],
    [
      'an unknown retention setting',
      { targets: [{ name: 'a', type: 'local', path: '/b', retention: { days: 3, keep: 1 } }] },
      /retention: unknown setting "keep"/,
    ],
    [
      'two targets with one name',
      {
        targets: [
          { name: 'a', type: 'local', path: '/b' },
          { name: 'a', type: 'local', path: '/c' },
        ],
      },
      /two targets are named "a"/,
    ],
    ['a type that is neither', { targets: [{ name: 'a', type: 'ftp', path: '/b' }] }, /type "ftp" is not local or s3/],
    ['a missing name', { targets: [{ type: 'local', path: '/b' }] }, /"name" is required/],
    ['a name that is not short', { targets: [{ name: 'my target!', type: 'local', path: '/b' }] }, /name "my target!" is not a short name/],
    ['a missing local path', { targets: [{ name: 'a', type: 'local' }] }, /"path" is required/],
    [
      'a bucket that is a list',
      { targets: [{ name: 's', type: 's3', bucket: ['x'], access_key_id: 'k', secret_access_key: 's' }] },
      /"bucket" must be a string/,
    ],
    ['a missing bucket', { targets: [{ name: 's', type: 's3', access_key_id: 'k', secret_access_key: 's' }] }, /"bucket" is required/],
    ['a missing secret', { targets: [{ name: 's', type: 's3', bucket: 'b', access_key_id: 'k' }] }, /"secret_access_key" is required/],
    [
      'force_path_style as a string',
      { targets: [{ name: 's', type: 's3', bucket: 'b', access_key_id: 'k', secret_access_key: 's', force_path_style: 'yes' }] },
      /"force_path_style" must be true or false/,
    ],
    [
      'part_size_mb below 5',
      { targets: [{ name: 's', type: 's3', bucket: 'b', access_key_id: 'k', secret_access_key: 's', part_size_mb: 4 }] },
      /part_size_mb 4 is not a whole number from 5 to 5000/,
    ],
    [
      'part_size_mb not whole',
      { targets: [{ name: 's', type: 's3', bucket: 'b', access_key_id: 'k', secret_access_key: 's', part_size_mb: 7.5 }] },
      /part_size_mb 7.5 is not/,
    ],
    [
      'timeout_seconds of 0',
      { targets: [{ name: 's', type: 's3', bucket: 'b', access_key_id: 'k', secret_access_key: 's', timeout_seconds: 0 }] },
      /targets\[0\]: timeout_seconds 0 is not a whole number from 1 to 3600/,
    ],
    [
      'timeout_seconds as text',
      { targets: [{ name: 's', type: 's3', bucket: 'b', access_key_id: 'k', secret_access_key: 's', timeout_seconds: '30s' }] },
      /timeout_seconds "30s" is not a whole number/,
    ],
    [
      'an endpoint that is not a URL',
      { targets: [{ name: 's', type: 's3', endpoint: 's3.example.com', bucket: 'b', access_key_id: 'k', secret_access_key: 's' }] },
      /endpoint "s3.example.com" is not an http\(s\) URL/,
    ],
    ['retention that is not an object', { targets: [{ name: 'a', type: 'local', path: '/b', retention: 7 }] }, /retention: is not an object/],
    [
      'retention days below 1',
      { targets: [{ name: 'a', type: 'local', path: '/b', retention: { days: 0 } }] },
      /days 0 is not a whole number from 1 to 100000/,
    ],
    [
      'retention weekly below 0',
      { targets: [{ name: 'a', type: 'local', path: '/b', retention: { weekly: -1 } }] },
      /retention: weekly -1 is not a whole number from 0/,
    ],
    [
      'retention monthly as text',
      { targets: [{ name: 'a', type: 'local', path: '/b', retention: { monthly: '6' } }] },
      /retention: monthly "6" is not a whole number/,
    ],
    ['retention daily not whole', { targets: [{ name: 'a', type: 'local', path: '/b', retention: { daily: 1.5 } }] }, /retention: daily 1.5 is not/],
    ['retention min_count as text', { targets: [{ name: 'a', type: 'local', path: '/b', retention: { min_count: 'all' } }] }, /min_count "all" is not/],
    ['a target that is not an object', { targets: ['local'] }, /targets\[0\]: is not an object/],
    ['no targets list', { target: [] }, /has no "targets" list/],
    ['an empty targets list', { targets: [] }, /lists no targets/],
  ])('rejects %s', (_what, doc, message) => {
    const e = fileError('t.json', JSON.stringify(doc));
    expect(e.message).toMatch(message);
    expect(e.hint).toBeTruthy();
  });

  it.each([
    ['t.json', '{ "targets": [ { "name": "a", } ] }', /t\.json is not valid JSON/],
    ['t.yaml', 'targets:\n  - name: a\n     type: local\n', /t\.yaml is not valid YAML/],
    ['t.yml', 'targets: [ { name: a, type: local }\n', /t\.yml is not valid YAML/],
  ])('invalid syntax in %s is an error that says which format it was read as', (name, text, message) => {
    const e = fileError(name, text);
    expect(e.message).toMatch(message);
    expect(e.hint).toMatch(/\.yml\/\.yaml file is read as YAML/);
  });

  it('a JSON syntax error does not quote the file around it (a secret may be there)', () => {
    const secret = 'LiteralSecretInFile42';
    const e = fileError('t.json', `{ "targets": [ { "name": "s", "secret_access_key": ${secret} } ] }`);
    expect(e.message).toMatch(/is not valid JSON: Unexpected token/);
    expect(e.message).not.toContain(secret.slice(0, 4));
  });

  it('a missing file is an error naming BACKUP_CONFIG_FILE and the path', () => {
    const dir = tmp();
    const e = configError({ ...BASE, BACKUP_CONFIG_FILE: 'nope.yml' }, dir);
    expect(e.variable).toBe('BACKUP_CONFIG_FILE');
    expect(e.message).toContain(`cannot read ${path.join(dir, 'nope.yml')} (ENOENT)`);
  });

  it('S3_BUCKET together with BACKUP_CONFIG_FILE is an error', () => {
    const { dir, vars } = configFile('t.yml', YAML_FILE);
    const e = configError({ ...vars, S3_BUCKET: 'b' }, dir);
    expect(e.variable).toBe('S3_BUCKET');
    expect(e.message).toBe('S3_BUCKET: is set and so is BACKUP_CONFIG_FILE');
    expect(e.hint).toMatch(/not both/);
  });

  it('describeConfig shows the file; S3 secrets in the environment show as ***', () => {
    const { dir, vars } = configFile('t.yml', YAML_FILE);
    const rows = describeConfig(loadConfig([], vars, dir));
    const row = (name: string) => rows.find((r) => r.variable === name)!;
    expect(row('BACKUP_CONFIG_FILE').value).toBe('t.yml');
    const envRows = describeConfig(loadConfig([], { DB_NAME: 'db', S3_BUCKET: 'b', S3_ACCESS_KEY_ID: 'AKIDEXAMPLE', S3_SECRET_ACCESS_KEY: SECRET }, dir));
    expect(envRows.find((r) => r.variable === 'S3_SECRET_ACCESS_KEY')!.value).toBe('***');
    expect(JSON.stringify(envRows)).not.toContain(SECRET);
  });

  it('any S3_* variable together with BACKUP_CONFIG_FILE is an error naming it, without its value', () => {
    const { dir, vars } = configFile('t.yml', YAML_FILE);
    let thrown: unknown;
    try {
      loadConfig([], { ...vars, S3_SECRET_ACCESS_KEY: SECRET }, dir);
    } catch (err) {
      thrown = err;
    }
    expect((thrown as Error).message).toMatch(/^S3_SECRET_ACCESS_KEY: is set and so is BACKUP_CONFIG_FILE/);
    expect((thrown as Error).message).not.toContain(SECRET);
  });
});

describe('Object Lock settings (issue 22)', () => {
  const s3Of = (vars: Record<string, string>, cwd = CWD) => parseConfig(vars, cwd).databases[0]!.targets.find((t) => t.type === 's3') as S3TargetConfig;
  const S3_FILE = (lock: unknown) =>
    JSON.stringify({
      targets: [{ name: 'b2', type: 's3', bucket: 'b', access_key_id: 'k', secret_access_key: 'never-shown-s', object_lock: lock, retention: { days: 30 } }],
    });

  it('S3_OBJECT_LOCK: compliance or governance (any case); unset or off: no lock', () => {
    expect(s3Of({ ...BASE, ...S3_ENV }).objectLock).toBeUndefined();
    expect(s3Of({ ...BASE, ...S3_ENV, S3_OBJECT_LOCK: 'off' }).objectLock).toBeUndefined();
    expect(s3Of({ ...BASE, ...S3_ENV, S3_OBJECT_LOCK: 'compliance' }).objectLock).toEqual({ mode: 'compliance' });
    expect(s3Of({ ...BASE, ...S3_ENV, S3_OBJECT_LOCK: 'GOVERNANCE' }).objectLock).toEqual({ mode: 'governance' });
  });

  it('another S3_OBJECT_LOCK is an error naming it and the two modes; without S3_BUCKET it is a stray S3 setting', () => {
    const e = configError({ ...BASE, ...S3_ENV, S3_OBJECT_LOCK: 'legal-hold' });
    expect(e.message).toContain('S3_OBJECT_LOCK: "legal-hold" is not compliance or governance');
    expect(e.hint).toMatch(/docs\/offsite.md#object-lock/);
    expect(configError({ ...BASE, S3_OBJECT_LOCK: 'compliance' }).message).toContain('S3_BUCKET: is not set but S3_OBJECT_LOCK is');
  });

  it('object_lock in BACKUP_CONFIG_FILE: an S3 target only; a wrong mode names the entry', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 't.json'), S3_FILE('compliance'));
    expect(s3Of({ ...BASE, BACKUP_CONFIG_FILE: 't.json' }, dir).objectLock).toEqual({ mode: 'compliance' });
    fs.writeFileSync(path.join(dir, 'bad.json'), S3_FILE('strict'));
    expect(configError({ ...BASE, BACKUP_CONFIG_FILE: 'bad.json' }, dir).message).toContain('targets[0]: object_lock "strict" is not compliance or governance');
    fs.writeFileSync(path.join(dir, 'local.json'), JSON.stringify({ targets: [{ name: 'l', type: 'local', path: '/b', object_lock: 'compliance' }] }));
    expect(configError({ ...BASE, BACKUP_CONFIG_FILE: 'local.json' }, dir).message).toContain('unknown setting "object_lock"');
  });

  it('delete: false / S3_DELETE=false makes an S3 target append-only; a local target refuses it; not a boolean is an error', () => {
    expect(s3Of({ ...BASE, ...S3_ENV }).appendOnly).toBeUndefined();
    expect(s3Of({ ...BASE, ...S3_ENV, S3_DELETE: 'false' }).appendOnly).toBe(true);
    expect(configError({ ...BASE, ...S3_ENV, S3_DELETE: 'never' }).message).toContain('S3_DELETE');
    expect(configError({ ...BASE, S3_DELETE: 'false' }).message).toContain('S3_BUCKET: is not set but S3_DELETE is');
    const dir = tmp();
    const file = (extra: Record<string, unknown>) =>
      JSON.stringify({ targets: [{ name: 'b2', type: 's3', bucket: 'b', access_key_id: 'k', secret_access_key: 'never-shown-s', ...extra }] });
    fs.writeFileSync(path.join(dir, 't.json'), file({ delete: false }));
    expect(s3Of({ ...BASE, BACKUP_CONFIG_FILE: 't.json' }, dir).appendOnly).toBe(true);
    fs.writeFileSync(path.join(dir, 'bad.json'), file({ delete: 'no' }));
    expect(configError({ ...BASE, BACKUP_CONFIG_FILE: 'bad.json' }, dir).message).toContain('targets[0]: "delete" must be true or false');
    fs.writeFileSync(path.join(dir, 'local.json'), JSON.stringify({ targets: [{ name: 'l', type: 'local', path: '/b', delete: false }] }));
    expect(configError({ ...BASE, BACKUP_CONFIG_FILE: 'local.json' }, dir).message).toContain('unknown setting "delete"');
  });

  it('BACKUP_TEST_LOCK_SECONDS (tests only) reaches locked targets alone', () => {
    expect(s3Of({ ...BASE, ...S3_ENV, S3_OBJECT_LOCK: 'governance', BACKUP_TEST_LOCK_SECONDS: '30' }).objectLock).toEqual({
      mode: 'governance',
      testSeconds: 30,
    });
    expect(s3Of({ ...BASE, ...S3_ENV, BACKUP_TEST_LOCK_SECONDS: '30' }).objectLock).toBeUndefined();
  });
});
