import type { Cluster } from './cluster';

/** The seed's tables, with a few rows each: users, payments, servers, deployments, domains, support_tickets, session. */
export const WEBSERVER_SCHEMA = `
CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, password_hash text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), stripe_id text NOT NULL, amount_cents int NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE servers (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), ip inet NOT NULL, plan text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE deployments (id serial PRIMARY KEY, server_id int NOT NULL REFERENCES servers(id), git_url text NOT NULL, commit_sha text NOT NULL, log jsonb, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE domains (id serial PRIMARY KEY, server_id int NOT NULL REFERENCES servers(id), hostname text UNIQUE NOT NULL, verified boolean NOT NULL DEFAULT false);
CREATE TABLE support_tickets (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), subject text NOT NULL, body text NOT NULL, status text NOT NULL DEFAULT 'open');
CREATE TABLE session (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL);
`;

export function webserverRows(users: number): string {
  return `
INSERT INTO users (email, password_hash) SELECT 'user' || g || '@example.test', md5(g::text) FROM generate_series(1, ${users}) g;
INSERT INTO payments (user_id, stripe_id, amount_cents, status) SELECT 1 + (g % ${users}), 'pi_' || md5(g::text), 500 + g % 5000, 'succeeded' FROM generate_series(1, ${users * 3}) g;
INSERT INTO servers (user_id, ip, plan) SELECT g, ('10.0.' || (g / 250) || '.' || (g % 250 + 1))::inet, 'basic' FROM generate_series(1, ${users}) g;
INSERT INTO deployments (server_id, git_url, commit_sha, log) SELECT 1 + (g % ${users}), 'https://git.example.test/app' || g || '.git', md5(g::text), jsonb_build_object('ok', true, 'step', g) FROM generate_series(1, ${users * 2}) g;
INSERT INTO domains (server_id, hostname, verified) SELECT g, 'site' || g || '.example.test', g % 2 = 0 FROM generate_series(1, ${users}) g;
INSERT INTO support_tickets (user_id, subject, body) SELECT 1 + (g % ${users}), 'Ticket ' || g, repeat('help ', 20) FROM generate_series(1, ${Math.max(1, Math.floor(users / 2))}) g;
INSERT INTO session (sid, sess, expire) SELECT md5('s' || g), json_build_object('user', g), now() + interval '1 day' FROM generate_series(1, ${users}) g;
`;
}

export const WEBSERVER_TABLES = ['users', 'payments', 'servers', 'deployments', 'domains', 'support_tickets', 'session'];

export async function createWebserverDb(cluster: Cluster, name: string, users = 50): Promise<void> {
  await cluster.createDatabase(name);
  await cluster.query(name, WEBSERVER_SCHEMA + webserverRows(users));
}

export async function rowCounts(cluster: Cluster, database: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of WEBSERVER_TABLES) {
    const rows = await cluster.query<{ n: string }>(database, `SELECT count(*)::text AS n FROM "${t}"`);
    out[t] = Number(rows[0]!.n);
  }
  return out;
}
