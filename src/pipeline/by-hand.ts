import { chainOf } from './names';

/**
 * The standard commands that undo the codecs of the stored object `file`, outermost first, to be
 * joined by pipes: the first reads the file (`fileArg`, as the shell should see it), each next one
 * its stdin. Empty when the name shows no codec. `key` stands for the identity file.
 */
export function decodePipe(file: string, fileArg: string, key: string): string[] {
  return chainOf(file)
    .reverse()
    .map((c, i) => (i === 0 ? `${c.byHand.filter(key)} ${fileArg}` : c.byHand.filter(key)));
}
