/**
 * A throwaway Postgres database for one bench run (`deno task bench --db
 * postgres://…`): created empty next to the one the URL names, so the
 * fixture and the server start from nothing, and dropped afterwards.
 *
 * @module
 */

import pg from "pg";
import { pgConnectionConfig } from "../lib/_pg_dialect.ts";

/** A created database; `url` names it, disposing drops it. */
export interface BenchDatabase extends AsyncDisposable {
  readonly url: string;
}

async function admin(url: string, sql: string): Promise<void> {
  const client = new pg.Client(pgConnectionConfig(url));
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Create `lanchat_bench_<random>` on the server of `url` (the user needs CREATEDB). */
export async function createBenchDatabase(url: string): Promise<BenchDatabase> {
  const name = `lanchat_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await admin(url, `create database "${name}"`);
  const own = new URL(url);
  own.pathname = `/${name}`;
  return {
    url: own.toString(),
    // FORCE: the server under test may have left a connection behind.
    [Symbol.asyncDispose]: () => admin(url, `drop database if exists "${name}" with (force)`),
  };
}
