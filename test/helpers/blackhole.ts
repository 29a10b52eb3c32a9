import net from 'node:net';
import { onTestFinished } from 'vitest';

export interface BlackholeProxy {
  port: number;
  /** Connections that went silent so far. */
  swallowed: number;
}

/** The startup parameters (user, database, application_name, …) of a PostgreSQL client, once sent. */
function startupParams(head: Buffer): Record<string, string> | undefined {
  let at = 0;
  for (;;) {
    if (head.length < at + 8) return undefined;
    const len = head.readUInt32BE(at);
    const code = head.readUInt32BE(at + 4);
    if (len === 8 && (code === 80877103 || code === 80877104)) {
      at += 8; // SSLRequest or GSSENCRequest, answered "N" by a server without TLS
      continue;
    }
    if (head.length < at + len) return undefined;
    const fields = head
      .subarray(at + 8, at + len - 1)
      .toString('utf8')
      .split('\0');
    const params: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) params[fields[i]!] = fields[i + 1]!;
    return params;
  }
}

/**
 * A TCP proxy on 127.0.0.1 to a PostgreSQL server, for connections that the network silently
 * stops carrying (a firewall or NAT that dropped their state): a connection whose startup
 * parameters match `match` is forwarded for its first `afterBytes` bytes from the client, then
 * everything in either direction is swallowed, and neither end learns when the other closes.
 * Other connections pass untouched. Closed when the test finishes.
 */
export async function startBlackholeProxy(
  target: { host: string; port: number },
  match: (params: Record<string, string>) => boolean,
  afterBytes: number,
): Promise<BlackholeProxy> {
  const sockets = new Set<net.Socket>();
  const proxy: BlackholeProxy = { port: 0, swallowed: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let head = Buffer.alloc(0);
    let matched: boolean | undefined;
    let sent = 0;
    let silent = false;
    client.on('data', (chunk: Buffer) => {
      if (matched === undefined) {
        head = Buffer.concat([head, chunk]);
        const params = startupParams(head);
        if (params) matched = match(params);
      }
      if (silent) return;
      if (matched && sent + chunk.length > afterBytes) {
        upstream.write(chunk.subarray(0, Math.max(0, afterBytes - sent)));
        silent = true;
        proxy.swallowed++;
        return;
      }
      sent += chunk.length;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!silent) client.write(chunk);
    });
    const close = (s: net.Socket) => {
      s.destroy();
      sockets.delete(s);
      if (silent) return; // a lost connection: the other end never hears of it
      const other = s === client ? upstream : client;
      other.destroy();
      sockets.delete(other);
    };
    client.on('close', () => close(client)).on('error', () => close(client));
    upstream.on('close', () => close(upstream)).on('error', () => close(upstream));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as net.AddressInfo).port;
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return proxy;
}
