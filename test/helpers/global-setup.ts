import type { TestProject } from 'vitest/node';
import { startCluster } from '../../scripts/lib/cluster';

export interface PgInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  binDir: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    pg: PgInfo;
  }
}

/** One throwaway PostgreSQL cluster for the whole run; each test creates its own database in it. */
export default async function setup(project: TestProject): Promise<() => void> {
  const cluster = await startCluster();
  project.provide('pg', { host: cluster.host, port: cluster.port, user: cluster.user, password: cluster.password, binDir: cluster.binDir });
  return () => cluster.stop();
}
