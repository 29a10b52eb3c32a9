import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, onTestFinished } from 'vitest';
import { clearSecrets } from '../../src/redact';

/** A private temp directory removed when the test finishes. */
export function tempDir(prefix = 'bb-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Call at the top of a file whose tests register secrets (loading a configuration does): each
 * test starts and ends with none, so one test's secret cannot redact another's output.
 */
export function clearSecretsAroundEachTest(): void {
  beforeEach(() => clearSecrets());
  afterEach(() => clearSecrets());
}
