import { describe, expect, it } from 'vitest';
import { sendHttp, shownUrl } from '../../src/notify/http';
import { PingRun, tail } from '../../src/notify/ping';
import { startPingServer } from '../helpers/ping-server';
import { freePort } from '../../scripts/lib/cluster';

describe('sendHttp: one deadline, a few attempts, never throws', () => {
  it('retries a 5xx within the deadline, then reports the failure', async () => {
    const server = await startPingServer({ status: 503 });
    const out = await sendHttp({ url: server.url, method: 'GET', totalMs: 5000, what: 'test' });
    expect(out).toMatchObject({ ok: false, status: 503 });
    expect(server.received).toHaveLength(3);
  });

  it('does not retry a 4xx (the URL is wrong: retrying will not help)', async () => {
    const server = await startPingServer({ status: 404 });
    const out = await sendHttp({ url: server.url, method: 'GET', totalMs: 5000, what: 'test' });
    expect(out).toMatchObject({ ok: false, status: 404 });
    expect(server.received).toHaveLength(1);
  });

  it('gives up on a server that never answers when the deadline passes', async () => {
    const server = await startPingServer({ hang: true });
    const t0 = Date.now();
    const out = await sendHttp({ url: server.url, method: 'POST', body: 'x', totalMs: 1500, what: 'test' });
    const took = Date.now() - t0;
    expect(out.ok).toBe(false);
    expect(out.error).toMatch(/no answer within/);
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(4000);
  });

  it('a refused connection is a failure, not a throw', async () => {
    const port = await freePort();
    const out = await sendHttp({ url: `http://127.0.0.1:${port}/x`, method: 'GET', totalMs: 3000, what: 'test' });
    expect(out).toMatchObject({ ok: false });
    expect(out.error).toMatch(/ECONNREFUSED/);
  });

  it('shows a URL as scheme://host/… only', () => {
    expect(shownUrl('https://user:pw@hc-ping.com/secret-uuid?token=t')).toBe('https://hc-ping.com/…');
  });
});

describe('PingRun', () => {
  it('pings start, then success with the same rid', async () => {
    const server = await startPingServer();
    const ping = new PingRun(server.url + '/', 5000);
    ping.start();
    await ping.finish(0, 'done\n');
    const [start, end] = await server.waitFor(2);
    expect(start).toMatchObject({ method: 'GET', path: '/ping/0b5e4f7e-secret-check/start', rid: ping.rid });
    expect(end).toMatchObject({ method: 'POST', path: '/ping/0b5e4f7e-secret-check', rid: ping.rid, body: 'done\n' });
  });

  it('keeps the body within the Ping-Body-Limit the server announced, keeping its end', async () => {
    const server = await startPingServer({ bodyLimit: 100 });
    const ping = new PingRun(server.url, 5000);
    ping.start();
    const lines = Array.from({ length: 50 }, (_, i) => `line ${i}`).join('\n') + '\nthe error\n';
    await ping.finish(20, lines);
    const [, end] = await server.waitFor(2);
    expect(end!.path).toBe('/ping/0b5e4f7e-secret-check/20');
    expect(Buffer.byteLength(end!.body)).toBeLessThanOrEqual(100);
    expect(end!.body.endsWith('the error\n')).toBe(true);
    expect(end!.body.startsWith('line ')).toBe(true);
  });

  it('cuts at most 10,000 bytes without a limit announced', () => {
    expect(Buffer.byteLength(tail('é'.repeat(20_000), 10_000))).toBeLessThanOrEqual(10_000);
    expect(tail('short', 10_000)).toBe('short');
  });
});
