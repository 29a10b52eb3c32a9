import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of one server, to make one test's view of a shared server
 * fail the ways a network and a provider do:
 * - `cut()`: the server is down: open connections are reset and new ones refused (ECONNREFUSED);
 * - `silence()`: the server accepts connections and never answers (a hung endpoint); open
 *   connections stop moving data in both directions;
 * - `restore()`: forwarding again, on the same port.
 * Without an upstream (`upstreamPort` undefined) it is a silent endpoint from the start.
 */
export interface TcpProxy {
  readonly port: number;
  readonly endpoint: string;
  /** Client-to-server bytes forwarded so far. */
  readonly bytesUp: number;
  /** With `record`: everything forwarded to the server (requests, headers included), as latin1. */
  sent(): string;
  cut(): Promise<void>;
  silence(): void;
  restore(): Promise<void>;
  /**
   * Runs `action` (e.g. `cut`) the moment the server first answers on a connection that sent at
   * least `minBytes` since its last answer, before that answer reaches the client: e.g. the
   * first uploaded part the server stored, whose success the client never learns of.
   */
  whenUploadAnswered(minBytes: number, action: () => void): Promise<void>;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  server: net.Socket | undefined;
  upSinceAnswer: number;
}

export async function startTcpProxy(upstreamPort: number | undefined, opts: { record?: boolean } = {}): Promise<TcpProxy> {
  let mode: 'open' | 'silent' = upstreamPort === undefined ? 'silent' : 'open';
  const pairs = new Set<Pair>();
  let bytesUp = 0;
  const recorded: Buffer[] = [];
  let trigger: { minBytes: number; action: () => void; done: () => void } | undefined;

  const forward = (from: net.Socket, to: () => net.Socket | undefined, onChunk: (n: number, chunk: Buffer) => boolean) => {
    from.on('data', (chunk: Buffer) => {
      if (mode !== 'open' || !onChunk(chunk.length, chunk) || mode !== 'open') return;
      const dest = to();
      if (!dest || dest.destroyed) return;
      if (!dest.write(chunk)) {
        from.pause();
        dest.once('drain', () => {
          if (mode === 'open') from.resume();
        });
      }
    });
  };

  const onConnection = (client: net.Socket) => {
    const pair: Pair = { client, server: undefined, upSinceAnswer: 0 };
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      pair.server?.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop);
    client.on('close', drop);
    if (mode !== 'open' || upstreamPort === undefined) {
      client.pause();
      return;
    }
    const server = net.connect(upstreamPort, '127.0.0.1');
    pair.server = server;
    server.on('error', drop);
    server.on('close', drop);
    forward(
      client,
      () => server,
      (n, chunk) => {
        if (opts.record) recorded.push(chunk);
        bytesUp += n;
        pair.upSinceAnswer += n;
        return true;
      },
    );
    forward(
      server,
      () => client,
      () => {
        if (trigger && pair.upSinceAnswer >= trigger.minBytes) {
          const t = trigger;
          trigger = undefined;
          t.action();
          t.done();
        }
        pair.upSinceAnswer = 0;
        return true;
      },
    );
  };

  let listener: net.Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const l = net.createServer(onConnection);
      l.once('error', reject);
      l.listen(port, '127.0.0.1', () => {
        port = (l.address() as net.AddressInfo).port;
        listener = l;
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      const l = listener;
      listener = undefined;
      if (!l) return resolve();
      l.close(() => resolve());
    });
  const resetAll = () => {
    for (const p of [...pairs]) {
      p.client.resetAndDestroy();
      p.server?.destroy();
      pairs.delete(p);
    }
  };

  await listen();
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    get bytesUp() {
      return bytesUp;
    },
    sent: () => Buffer.concat(recorded).toString('latin1'),
    async cut() {
      const closed = stopListening();
      resetAll();
      await closed;
    },
    silence() {
      mode = 'silent';
      for (const p of pairs) {
        p.client.pause();
        p.server?.pause();
      }
    },
    async restore() {
      if (upstreamPort === undefined) throw new Error('a proxy without an upstream cannot forward');
      // connections left from the silent time stay silent; new ones are forwarded
      resetAll();
      mode = 'open';
      if (!listener) await listen();
    },
    whenUploadAnswered(minBytes, action) {
      return new Promise((resolve) => {
        trigger = { minBytes, action, done: resolve };
      });
    },
    async close() {
      const closed = stopListening();
      resetAll();
      await closed;
    },
  };
}
