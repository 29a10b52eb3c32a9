/**
 * How a command ends: what it printed reaches its reader before the process exits, whatever the
 * exit code (stdout into a pipe is written as the reader takes it, so an exit right after the
 * last write would cut it at the pipe's 64 KiB); and a reader that goes away early (`| head -1`)
 * ends the printing quietly, not with an EPIPE stack trace.
 */

const gone = new WeakSet<NodeJS.WritableStream>();

/**
 * From now on, a stdout or stderr whose reader has closed the pipe (EPIPE) is left alone: the
 * rest of what the command prints is dropped, and the command finishes its work and exits with
 * its own code (the reader chose to stop reading; what the command did is unchanged). Any other
 * write error stays fatal, as without this.
 */
export function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      gone.add(stream);
    });
  }
}

/** Resolves once everything written to `stream` so far has been handed to the system (or the reader is gone). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (gone.has(stream) || stream.destroyed || stream.writableLength === 0) return Promise.resolve();
  // writes complete in order: the callback of an empty write comes after every earlier one
  return new Promise((resolve) => stream.write('', () => resolve()));
}

/**
 * Exits with `code` once stdout and stderr are written out. Exiting (rather than waiting for the
 * event loop to empty) is deliberate: the daemon leaves a storage request that never answers
 * behind when it stops, and a crash leaves timers; neither may keep the process alive.
 */
export async function exitWhenWritten(code: number): Promise<never> {
  process.exitCode = code;
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}
