/**
 * Hot read queries of the Kysely store, compiled by Kysely once and run
 * again as SQL text with new values. Why: on every websocket connect the
 * store answers a token lookup, the user's groups and the catch-up seqs;
 * building and compiling them with Kysely each time cost about a third of
 * the connect path's CPU and most of its garbage (bench/RESULTS.md, round 3),
 * while the SQL text never changes. The adapter's statement cache then
 * reuses the prepared statement as well.
 *
 * @module
 */

import { type Compilable, CompiledQuery, type Kysely } from "kysely";
import type { Database } from "./migrations.ts";
import type { SqliteReads } from "./_sqlite_dialect.ts";

/** Compiled SQL texts by query name, one cache per store. */
export class ReusedQueries {
  #sql = new Map<string, string>();
  #direct: SqliteReads | undefined;

  /** With `direct` (a SQLite dialect), the reruns skip Kysely's executor. */
  constructor(direct?: SqliteReads) {
    this.#direct = direct;
  }

  /**
   * Run the query `name` with `params`, in the order the builder binds them
   * (`build` is called only the first time, with any values of the right
   * types). Throws when the builder binds a different number of values.
   */
  async rows<R>(
    db: Kysely<Database>,
    name: string,
    build: () => Compilable<R>,
    params: readonly unknown[],
  ): Promise<R[]> {
    let sql = this.#sql.get(name);
    if (sql === undefined) {
      const compiled = build().compile();
      if (compiled.parameters.length !== params.length) {
        throw new RangeError(
          `Query ${name} binds ${compiled.parameters.length} values, not ${params.length}`,
        );
      }
      sql = compiled.sql;
      this.#sql.set(name, sql);
    }
    if (this.#direct !== undefined) return await this.#direct.rows<R>(sql, params);
    return (await db.executeQuery<R>(CompiledQuery.raw(sql, [...params]))).rows;
  }
}
