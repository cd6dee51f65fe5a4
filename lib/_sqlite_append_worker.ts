/**
 * The SQLite append worker (issue #7): group-commit batches written on the
 * worker's own `node:sqlite` connection, so SQLite's work for a message
 * (B-tree inserts, WAL writes), about half of the main thread's time in 1:1
 * chat, runs on another core while the main thread serves sockets. The main
 * side is `store_append_worker.ts`; the messages are in `_append_wire.ts`.
 *
 * Loaded as a worker module under the server's read permission, so its
 * runtime imports stay within `lib/` and never reach Kysely (`_batch_sql.ts`).
 *
 * @module
 */

import { AppendConnection } from "./_sqlite_append_connection.ts";
import {
  decodeBatch,
  encodeOutcomes,
  toWire,
  type WorkerReply,
  type WorkerRequest,
} from "./_append_wire.ts";

/** The worker's side of `postMessage`. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
  close(): void;
}

/** Answers the main side's requests one at a time, in order. */
class AppendWorkerHost {
  #scope: WorkerScope;
  #connection: AppendConnection | undefined;
  #queue: Promise<void> = Promise.resolve();

  constructor(scope: WorkerScope) {
    this.#scope = scope;
  }

  listen(): void {
    this.#scope.onmessage = (event) => {
      const request = event.data;
      this.#queue = this.#queue.then(() => this.#answer(request));
    };
  }

  async #answer(request: WorkerRequest): Promise<void> {
    const scope = this.#scope;
    if (request.kind === "open") {
      try {
        this.#connection = new AppendConnection(request.path, {
          busyTimeoutMs: request.busyTimeoutMs,
          walSyncMs: request.walSyncMs,
          durable: request.durable,
          onSyncFailed: (error) => scope.postMessage({ kind: "syncFailed", error: toWire(error) }),
          warn: (message) => scope.postMessage({ kind: "warning", message }),
        });
        scope.postMessage({ kind: "opened" });
      } catch (error) {
        scope.postMessage({ kind: "failed", id: 0, error: toWire(error) });
      }
    } else if (request.kind === "batch") {
      const { id } = request;
      const failed = (error: unknown) => {
        scope.postMessage({ kind: "failed", id, error: toWire(error) });
      };
      try {
        const connection = this.#connection;
        if (connection === undefined) throw new Error("The append worker has no database");
        const outcomes = encodeOutcomes(await connection.commit(decodeBatch(request.batch)));
        const done = () => {
          scope.postMessage({ kind: "done", id, outcomes }, [outcomes.fresh.buffer]);
        };
        if (!connection.durable) done();
        // The answer waits for the disk, the next batch does not: its commit
        // runs while this one syncs, and answers come in order (each sync
        // starts after the one before it ended).
        else connection.synced().then(done, failed);
      } catch (error) {
        failed(error);
      }
    } else {
      try {
        await this.#connection?.close();
      } finally {
        this.#connection = undefined;
        scope.postMessage({ kind: "closed" });
      }
    }
  }
}

new AppendWorkerHost(self as unknown as WorkerScope).listen();
