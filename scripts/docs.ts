/**
 * npm run docs: rewrites the generated sections of the documentation (the exit-code table and
 * the variables reference) from src/errors.ts and src/config/variables.ts. See scripts/lib/docs.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { GENERATED_FILES, regenerate } from './lib/docs';

async function main(): Promise<void> {
  const root = path.resolve(__dirname, '..', '..');
  for (const file of GENERATED_FILES) {
    const full = path.join(root, file);
    const next = await regenerate(root, file);
    if (next === fs.readFileSync(full, 'utf8')) {
      process.stdout.write(`${file}: up to date\n`);
    } else {
      fs.writeFileSync(full, next);
      process.stdout.write(`${file}: rewritten\n`);
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
