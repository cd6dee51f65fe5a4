/**
 * Group commit for message appends: appends that arrive while a write is in
 * flight wait and then go to the store together, as one
 * {@linkcode MessageStore.appendMessages} call (one transaction), instead of
 * one transaction each. Each caller still gets its own result or error.
 *
 * Why: a transaction's fixed cost (BEGIN/COMMIT, the WAL write, query
 * round trips) dominates a small insert; under load, batching spreads it
 * over many messages. At light load a batch is one message and nothing waits.
 *
 * @module
 */

import type { AppendOutcome, AppendRequest, AppendResult, NewMessage } from "./store.ts";

/** Writes one batch; see {@linkcode MessageStore.appendMessages}. */
export type BatchWriter = (batch: readonly AppendRequest[]) => Promise<AppendOutcome[]>;

/** Options of {@linkcode GroupCommit}. */
export interface GroupCommitOptions {
  /** Most appends in one batch; the rest wait for the next one. @default {128} */
  readonly maxBatch?: number;
  /**
   * Batches handed to the writer before the first of them finishes. Above 1
   * only for a writer that writes its batches one after another in the
   * order given (the SQLite append worker): it then has the next batch while
   * this thread handles the last one's results, instead of idling. @default {1}
   */
  readonly maxInFlight?: number;
}

interface Pending {
  readonly request: AppendRequest;
  resolve(result: AppendResult): void;
  reject(error: unknown): void;
}

/**
 * Serialises appends into batches: at most `maxInFlight` batches (one by
 * default) are being written at a time, and the calls made meanwhile form
 * the next batch, in call order. Calls made in the same tick as the first
 * one join its batch (the write starts on the next microtask).
 */
export class GroupCommit {
  #write: BatchWriter;
  #maxBatch: number;
  #maxInFlight: number;
  #queue: Pending[] = [];
  #inFlight = 0;
  #scheduled = false;

  /** Batch appends for `write`. */
  constructor(write: BatchWriter, options: GroupCommitOptions = {}) {
    this.#write = write;
    this.#maxBatch = Math.max(1, Math.floor(options.maxBatch ?? 128));
    this.#maxInFlight = Math.max(1, Math.floor(options.maxInFlight ?? 1));
  }

  /** Append `message` in the next batch; resolves with its own outcome. */
  append(message: NewMessage, now: number): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ request: { message, now }, resolve, reject });
      if (!this.#scheduled && this.#inFlight < this.#maxInFlight) {
        this.#scheduled = true;
        queueMicrotask(() => {
          this.#scheduled = false;
          this.#pump();
        });
      }
    });
  }

  /** Appends waiting for a batch (not counting the ones being written). */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Start batches while there are appends waiting and room in flight. */
  #pump(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#maxInFlight) {
      this.#inFlight++;
      void this.#run(this.#queue.splice(0, this.#maxBatch));
    }
  }

  async #run(batch: Pending[]): Promise<void> {
    try {
      const outcomes = await this.#write(batch.map((p) => p.request));
      batch.forEach((p, i) => {
        const outcome = outcomes[i];
        if (outcome === undefined) {
          p.reject(new RangeError(`Batch writer returned no outcome for item ${i}`));
        } else if (outcome.ok) {
          p.resolve(outcome.result);
        } else {
          p.reject(outcome.error);
        }
      });
    } catch (error) {
      for (const p of batch) p.reject(error);
    } finally {
      this.#inFlight--;
      this.#pump();
    }
  }
}
