import path from 'node:path';
import type { DbConfig, ValueSource } from '../config/types';
import { quoteIdent } from '../digest/table-digests';
import { decodePipe } from '../pipeline/by-hand';
import type { Codec } from '../pipeline/codecs';
import { chainOf, withoutSuffix } from '../pipeline/names';
import type { RestorePlan } from './plan';

/** Where the backup's files are, for commands that read them without basement-backup. */
export type BackupLocation =
  | { kind: 'local'; dataPath: string; rolesPath: string | undefined }
  | {
      kind: 's3';
      target: string;
      endpoint: string | undefined;
      region: string;
      bucket: string;
      prefix: string;
      accessKeyId: ValueSource;
      secretAccessKey: ValueSource;
    };

export interface ByHandInput {
  plan: RestorePlan;
  db: Pick<DbConfig, 'host' | 'port' | 'user' | 'sslmode'>;
  /** Where the database password is configured; undefined when there is none. */
  password: ValueSource | undefined;
  location: BackupLocation;
  /** The PostgreSQL client tools' directory basement-backup uses; undefined: from PATH. */
  binDir: string | undefined;
  pm2Bin: string;
  /** BACKUP_AGE_IDENTITY_FILE, for an encrypted backup; undefined: the script says where to put the path. */
  identityFile?: string | undefined;
}

/** `text` as one word for a POSIX shell. */
export function shellQuote(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

function sqlLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** A database name for `-d`: libpq reads a value with "=" or a postgresql:// start as a connection string. */
function dbArg(name: string): string {
  return /=|^postgres(ql)?:\/\//i.test(name) ? `dbname='${name.replace(/[\\']/g, (c) => `\\${c}`)}'` : name;
}

function ereEscape(text: string): string {
  return text.replace(/[.[\]\\*^$()+?{}|]/g, (c) => `\\${c}`);
}

/** Lines that put a secret into the environment variable `envVar` without showing it. */
function secretLines(envVar: string, source: ValueSource, what: string): string[] {
  if (source.reader) return [`export ${envVar}="$(${source.reader})"    # ${source.variable} from ${source.file}`];
  if (source.variable && !source.file)
    return [`export ${envVar}="$${source.variable}"    # ${source.variable}, as set in the environment basement-backup ran in`];
  // from the terminal: when the script itself is bash's input (`restore --dry-run | bash`), stdin is the script
  return [`read -rsp ${shellQuote(`${what}: `)} ${envVar} </dev/tty && echo && export ${envVar}    # type or paste it; it is not shown`];
}

/**
 * The by-hand equivalent of the restore `plan` for this configuration, as a bash script of
 * comments and commands: fetch (from a bucket), check the sha256, undo the pipeline's codecs
 * (each with its standard command), create the database, restore (pg_restore for custom, psql for
 * plain), and with --replace the switch. Secrets never appear in it: commands read them from the
 * env file they are in, or ask for them.
 */
export function byHandScript(i: ByHandInput): string {
  const { plan, db } = i;
  const m = plan.manifest;
  const tool = (name: string) => shellQuote(i.binDir ? path.join(i.binDir, name) : name);
  const conn = `-h ${shellQuote(db.host)} -p ${db.port} -U ${shellQuote(db.user)}`;
  const s = new Script();

  s.out.push('# The same by hand, without basement-backup. Paste the commands into bash one at a time, or save');
  s.out.push('# this to a file and run `bash -euo pipefail FILE`. Passwords and keys are never printed.');
  s.out.push('#');
  s.out.push('# The database password for the commands below (or leave PGPASSWORD unset and give it in');
  s.out.push(
    `# ~/.pgpass, chmod 600, as the line ${[db.host, String(db.port), '*', db.user].map((f) => f.replace(/[\\:]/g, (c) => `\\${c}`)).join(':')}:PASSWORD):`,
  );
  if (i.password) s.out.push(...secretLines('PGPASSWORD', i.password, 'database password'));
  else s.out.push('# (none is configured: the server trusts this user, or ~/.pgpass has it)');
  if (db.sslmode) s.out.push(`export PGSSLMODE=${shellQuote(db.sslmode)}`);

  const fetched = fetchSteps(s, i);

  s.say(`Check the file against its manifest (sha256 ${m.sha256}, ${m.size_bytes} bytes); it must print "OK":`);
  s.out.push(`echo ${shellQuote(`${m.sha256}  ${fetched.data}`)} | sha256sum -c -`);
  const copiesAt = s.out.length;
  const { data, roles, copies } = decodeSteps(s, i, fetched);
  const copied = chainOf(m.file).some((c) => c.keyed) ? 'decrypted' : 'decompressed';
  if (copies.length > 0) s.out.splice(copiesAt, 0, ...removeOnExit(copies, copied));

  if (plan.withRoles) {
    if (roles) {
      s.say(
        'Roles: basement-backup creates only the roles this server lacks, from the saved roles file. By hand, run the CREATE ROLE (and its ALTER ROLE) lines of the missing ones:',
      );
      s.out.push(`grep -E '^(CREATE|ALTER) ROLE' ${shellQuote(roles)}`);
    } else {
      s.out.push('# (this backup has no saved roles: --with-roles has nothing to create)');
    }
  }

  s.say(`Create the new, empty database "${plan.target}"${plan.owner ? ` owned by "${plan.owner}", as "${plan.live}" is` : ''}:`);
  s.out.push(`${tool('createdb')} ${conn} -T template0${plan.owner ? ` -O ${shellQuote(plan.owner)}` : ''} ${shellQuote(plan.target)}`);
  restoreSteps(s, plan, data, tool, conn);
  if (copies.length > 0) s.out.push(`rm -f ${copies.map(shellQuote).join(' ')} && trap - EXIT    # the ${copied} copies`);
  if (plan.replace) switchSteps(s, plan, i.pm2Bin, `${tool('psql')} -X -v ON_ERROR_STOP=1 ${conn} -d postgres`);
  if (i.password) s.out.push('unset PGPASSWORD');
  return s.out.join('\n') + '\n';
}

/**
 * The lines that remove the copies in the working directory (`./name`) however the script ends:
 * a failed command under `bash -e`, Ctrl-C, or the shell they were pasted into exiting.
 */
function removeOnExit(copies: string[], what: string): string[] {
  const paths = copies.map((c) => `"$PWD"/${shellQuote(path.basename(c))}`).join(' ');
  return [
    `# The ${what} copies below are removed however this ends (a failed step, Ctrl-C):`,
    `bb_copies=(${paths}) && trap 'rm -f -- "\${bb_copies[@]}"' EXIT`,
  ];
}

/** The script's lines, with numbered steps. */
class Script {
  readonly out: string[] = [];
  private step = 0;

  say(text: string): void {
    this.out.push(`# ${++this.step}. ${text}`);
  }
}

/**
 * Undoes the backup's codecs (the pipeline's, outermost first) into the working directory,
 * readable by this user only: a keyed one (age) always, with the identity of one of its
 * recipients, the roles file too; a compression into a file only for a custom archive, so
 * pg_restore can read its table of contents and restore in parallel (a plain dump is decompressed
 * on the way into psql). Returns the files to read, and the copies made (the roles' last).
 */
function decodeSteps(s: Script, i: ByHandInput, f: { data: string; roles: string | undefined }): { data: string; roles: string | undefined; copies: string[] } {
  const m = i.plan.manifest;
  const key = i.identityFile ? shellQuote(i.identityFile) : 'KEYFILE';
  let { data, roles } = f;
  const copies: string[] = [];
  let rolesCopy: string | undefined;
  for (const codec of chainOf(m.file).reverse()) {
    if (!codec.keyed && m.format !== 'custom') break;
    s.say(stepText(codec, i));
    // into the working directory (never beside the stored backup)
    const into = (file: string) => `./${withoutSuffix(path.basename(file), codec)}`;
    const undo = (from: string, to: string) => s.out.push(`(umask 077 && ${codec.byHand.toFile(shellQuote(from), shellQuote(to), key)})`);
    const next = into(data);
    undo(data, next);
    copies.push(next);
    data = next;
    if (codec.keyed && roles?.endsWith(codec.suffix)) {
      rolesCopy = into(roles);
      undo(roles, rolesCopy);
      roles = rolesCopy;
    }
  }
  return { data, roles, copies: rolesCopy ? [...copies, rolesCopy] : copies };
}

/** What the step that undoes `codec` says it does. */
function stepText(codec: Codec, i: ByHandInput): string {
  const { tool, install } = codec.byHand;
  if (!codec.keyed) return `Decompress it with ${tool} (\`${install}\`) into this directory:`;
  const recipients = i.plan.manifest.encryption?.recipients ?? [];
  return `Decrypt it with ${tool} (\`${install}\`) and the identity of one of its recipients (${recipients.join(', ')})${i.identityFile ? '' : '; replace KEYFILE with the path of that identity file'}:`;
}

/** Where the data and roles files are: in place for a local target, fetched with aws-cli from a bucket. */
function fetchSteps(s: Script, i: ByHandInput): { data: string; roles: string | undefined } {
  const { plan } = i;
  const m = plan.manifest;
  const l = i.location;
  if (l.kind === 'local') return { data: l.dataPath, roles: l.rolesPath };
  const roles = plan.withRoles && m.roles_file ? `./${m.roles_file}` : undefined;
  s.say(`Fetch the backup from the bucket (target ${l.target}) into this directory with aws-cli (\`pip install awscli\` or \`apt-get install awscli\`):`);
  s.out.push(...secretLines('AWS_ACCESS_KEY_ID', l.accessKeyId, 'bucket access key id'));
  s.out.push(...secretLines('AWS_SECRET_ACCESS_KEY', l.secretAccessKey, 'bucket secret access key'));
  const aws = `aws s3 cp --only-show-errors${l.endpoint ? ` --endpoint-url ${shellQuote(l.endpoint)}` : ''} --region ${shellQuote(l.region)}`;
  for (const name of [m.file, ...(roles ? [m.roles_file!] : [])])
    s.out.push(`${aws} ${shellQuote(`s3://${l.bucket}/${l.prefix}${name}`)} ${shellQuote(`./${name}`)}`);
  s.out.push('unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY');
  return { data: `./${m.file}`, roles };
}

/** pg_restore (custom, optionally only some tables) or psql (plain, decompressed on the way) into the new database. */
function restoreSteps(s: Script, plan: RestorePlan, data: string, tool: (name: string) => string, conn: string): void {
  const target = shellQuote(dbArg(plan.target));
  if (plan.manifest.format === 'custom') {
    let useList = '';
    if (plan.tables.length > 0) {
      const names = plan.tables.map((t) => t.replace('.', ' '));
      const schemas = [...new Set(names.map((n) => n.slice(0, n.indexOf(' '))))].filter((x) => x !== 'public');
      const alternatives = [...schemas.map((x) => `SCHEMA - ${ereEscape(x)} `), ...names.map((n) => `TABLE (DATA )?${ereEscape(n)} `)];
      s.say(`Select the tables ${plan.tables.join(', ')} (and their schemas) from the archive's table of contents:`);
      s.out.push(
        `${tool('pg_restore')} --list ${shellQuote(data)} | grep -E ${shellQuote(`^[0-9]+; [0-9]+ [0-9]+ (${alternatives.join('|')})`)} > tables.list`,
      );
      useList = ' --use-list tables.list';
    }
    s.say(`Restore into "${plan.target}", stopping at the first error:`);
    s.out.push(`${tool('pg_restore')} --exit-on-error${useList} ${conn} -d ${target} ${shellQuote(data)}`);
  } else {
    if (plan.tables.length > 0) s.out.push('# (a plain backup holds SQL, which cannot be restored table by table: this restores the whole database)');
    s.say(`Restore into "${plan.target}", stopping at the first error:`);
    const psql = `${tool('psql')} -X -q -v ON_ERROR_STOP=1 ${conn} -d ${target}`;
    const decode = decodePipe(data, shellQuote(data), 'KEYFILE');
    s.out.push(decode.length === 0 ? `${psql} -f ${shellQuote(data)}` : [...decode, psql].join(' | '));
  }
}

/** --replace: stop the app, move the live database aside, rename the restored copy in, start the app (and --drop-old). */
function switchSteps(s: Script, plan: RestorePlan, pm2Bin: string, psqlAdmin: string): void {
  const steps = [
    ...(plan.app ? ['stop the app'] : []),
    ...(plan.liveExists !== false ? [`move "${plan.live}" aside as "${plan.previous}"`] : []),
    `give the restored copy the name "${plan.live}"`,
    ...(plan.app ? ['start the app'] : []),
  ];
  s.say(`The switch: ${steps.join(', ')}:`);
  if (plan.app) s.out.push(`${shellQuote(pm2Bin)} stop ${shellQuote(plan.app.name)}`);
  const rename = (from: string, to: string) =>
    `${psqlAdmin} -c ${shellQuote(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${sqlLiteral(from)} AND pid <> pg_backend_pid()`)} -c ${shellQuote(`ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`)}`;
  if (plan.liveExists === undefined) s.out.push(`# (only when "${plan.live}" exists:)`);
  if (plan.liveExists !== false) s.out.push(rename(plan.live, plan.previous!));
  s.out.push(rename(plan.target, plan.live));
  if (plan.app) s.out.push(`${shellQuote(pm2Bin)} start ${shellQuote(plan.app.name)}`);
  if (plan.dropOld && plan.liveExists !== false) {
    s.say(`Once the app works with the restored database, drop the old one:`);
    s.out.push(`${psqlAdmin} -c ${shellQuote(`DROP DATABASE ${quoteIdent(plan.previous!)}`)}`);
  }
}
