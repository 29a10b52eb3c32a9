import readline from 'node:readline/promises';
import { Writable } from 'node:stream';
import { SingleBar } from 'cli-progress';

/** Asks a yes/no question on the terminal; false unless the answer starts with y. */
export async function askYesNo(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/** Asks for a secret on the terminal: the prompt on stderr, what is typed not echoed. */
export async function askHidden(prompt: string): Promise<string> {
  const muted = new Writable({ write: (_chunk, _enc, cb) => cb() });
  // the terminal is in raw mode (no echo) from here: only then the prompt
  const rl = readline.createInterface({ input: process.stdin, output: muted, terminal: true });
  process.stderr.write(prompt);
  try {
    return await rl.question('');
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}

/** A progress bar on stderr when it is a terminal; undefined otherwise. */
export function progressBar(label: string): { update: (done: number, total: number, item: string) => void; stop: () => void } | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bar = new SingleBar({ format: `${label} [{bar}] {value}/{total} {item}`, stream: process.stderr, hideCursor: true, clearOnComplete: true }, undefined);
  let started = false;
  return {
    update(done, total, item) {
      if (!started) {
        bar.start(Math.max(total, done), 0, { item: '' });
        started = true;
      }
      bar.setTotal(Math.max(total, done));
      bar.update(done, { item: item === 'bytes' ? '' : item });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
