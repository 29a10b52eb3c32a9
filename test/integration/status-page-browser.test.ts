/**
 * The status page in a real browser: Debian's chromium, headless, driven by playwright-core
 * (no browser download: it is pointed at /usr/bin/chromium). Kept out of .ci/run's
 * NODE_LINE_TESTS: what it tests does not differ between Node lines.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { describe, expect, it, onTestFinished } from 'vitest';
import { takeBackup } from '../helpers/app';
import { backupEnv, tempDir } from '../helpers/cli';
import { copiesOf } from '../helpers/damaged';
import { smallDb } from '../helpers/daemon';
import { bearer, daemonWithHttp, TOKEN } from '../helpers/http';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Where the screenshots are left (git-ignored): what the page looked like in the last run. */
const ARTIFACTS = path.resolve(__dirname, '../../test-artifacts');

async function launch(): Promise<Browser> {
  // as root chromium refuses its sandbox; the page is ours, on loopback
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 30_000 });
  onTestFinished(() => browser.close());
  return browser;
}

describe('the status page in headless Chromium', () => {
  it('shows the chart and the table, on a phone and a desktop, with no request leaving loopback and no console error', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_HTTP_PORT: '0', BACKUP_HTTP_TOKEN: TOKEN });
    copiesOf(dir, await takeBackup(env), 8);
    const { url } = await daemonWithHttp(env);
    const browser = await launch();
    fs.mkdirSync(ARTIFACTS, { recursive: true });

    for (const [name, viewport] of [
      ['phone', { width: 390, height: 844 }],
      ['desktop', { width: 1280, height: 900 }],
    ] as const) {
      const context = await browser.newContext({ viewport, extraHTTPHeaders: bearer(), javaScriptEnabled: false });
      const page = await context.newPage();
      const requests: string[] = [];
      const problems: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
      page.on('pageerror', (e) => problems.push(e.message));
      const response = await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
      expect(response?.status()).toBe(200);

      const section = page.locator(`section.database[data-database="${db}"]`);
      expect(await section.locator('svg.chart').count()).toBe(2);
      expect(await section.locator('svg.chart circle.dot').count()).toBe(2 * 9);
      expect(await section.locator('table.backups tbody tr').count()).toBe(9);
      expect(await section.locator('table.targets tbody tr').count()).toBe(1);
      expect(await page.title()).toBe('OK · basement-backup');
      // nothing wider than a phone's screen: the tables scroll inside their own box
      expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);

      await page.screenshot({ path: path.join(ARTIFACTS, `status-page-${name}.png`), fullPage: true });
      expect(problems).toEqual([]);
      expect(requests.length).toBeGreaterThan(0);
      for (const r of requests) expect(new URL(r).origin).toBe(new URL(url).origin);
      await context.close();
    }
  });
});
