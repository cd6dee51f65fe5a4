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
          warn: (message) => scope.postMessage({ kind: "warning", message }),
        });
        scope.postMessage({ kind: "opened" });
      } catch (error) {
        scope.postMessage({ kind: "failed", id: 0, error: toWire(error) });
      }
    } else if (request.kind === "batch") {
      try {
        if (this.#connection === undefined) throw new Error("The append worker has no database");
        const outcomes = encodeOutcomes(
          await this.#connection.write(decodeBatch(request.batch)),
        );
        scope.postMessage({ kind: "done", id: request.id, outcomes }, [outcomes.fresh.buffer]);
      } catch (error) {
        scope.postMessage({ kind: "failed", id: request.id, error: toWire(error) });
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
