import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import type { AppControl } from './pm2';

/** pm2 statuses of an app that runs (or is about to). */
const RUNNING = new Set(['online', 'launching']);

/** What is true of the app after a failed or cancelled switch, for the error; `down` when it is (or may be) left stopped. */
export interface AppAfter {
  /** Appended to the error's hint: " and the app was started again", "; the app is STOPPED: …". */
  text: string;
  /** Set when the app is, or may be, left stopped: what to say loudly. */
  down?: string;
  /** The app may be running after all (pm2 could not say). */
  mayRun?: boolean;
}

/**
 * The pm2 app of a switch: stopped before it, started after it. When a pm2 command fails, pm2 is
 * asked (`jlist`) what it really did rather than guessing: a stop that pm2 carried out anyway
 * lets the switch go on, and an app left stopped is started again by `startAgain`.
 */
export class SwitchApp {
  /** The app is down because of the switch: it must be started again. */
  private stopped = false;
  /** pm2 could not say whether the app runs (why). */
  private unknown: string | undefined;

  constructor(
    readonly name: string,
    private readonly control: AppControl | undefined,
  ) {}

  async stop(): Promise<void> {
    const control = this.need();
    try {
      await control.stop(this.name);
    } catch (err) {
      const e = asBackupError(err);
      await this.learn(control);
      if (!this.stopped) throw e;
      log.warn(`${e.message}, but pm2 lists the app as stopped: going on with the switch`, { app: this.name });
      return;
    }
    this.stopped = true;
    log.info('stopped the app for the switch', { app: this.name });
  }

  async start(): Promise<void> {
    const control = this.need();
    try {
      await control.start(this.name);
    } catch (err) {
      const e = asBackupError(err);
      await this.learn(control);
      if (this.stopped || this.unknown !== undefined) throw e;
      log.warn(`${e.message}, but pm2 lists the app as running`, { app: this.name });
      return;
    }
    this.stopped = false;
  }

  /** After a failed or cancelled switch: starts the app again if the switch stopped it, and says what is true. */
  async startAgain(): Promise<AppAfter> {
    const start = `start it with \`pm2 start ${this.name}\` as the user that owns the pm2 processes`;
    if (this.unknown !== undefined) {
      return {
        text: `; pm2 could not say whether the app runs (${this.unknown}): check it with \`pm2 list\`, and ${start} if it is stopped`,
        down: `pm2 could not say whether the pm2 app "${this.name}" runs (${this.unknown})`,
        mayRun: true,
      };
    }
    if (!this.stopped) return { text: '; the app was not stopped' };
    try {
      await this.start();
      return { text: ' and the app was started again' };
    } catch (err) {
      const why = asBackupError(err).message;
      return this.unknown === undefined
        ? { text: `; the app is STOPPED: ${start}`, down: `the pm2 app "${this.name}" is STOPPED: pm2 could not start it again (${why})` }
        : this.startAgain();
    }
  }

  private need(): AppControl {
    if (!this.control) throw new BackupError('APP_CONTROL', 'no way to control pm2 here', { hint: 'Install pm2 (`npm install -g pm2`) or set PM2_BIN.' });
    return this.control;
  }

  /** Asks pm2 whether the app runs: sets `stopped`, or `unknown` when pm2 cannot say. */
  private async learn(control: AppControl): Promise<void> {
    try {
      const app = (await control.list()).find((a) => a.name === this.name);
      this.stopped = !app || !RUNNING.has(app.status);
      this.unknown = undefined;
      log.info('pm2 lists the app', { app: this.name, status: app?.status ?? 'not there' });
    } catch (err) {
      this.unknown = asBackupError(err).message;
    }
  }
}
