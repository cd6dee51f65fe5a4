/**
 * A stand-in append worker for tests/store_append_worker_test.ts: it opens
 * (answers "opened") and then dies with an uncaught error on its first batch.
 *
 * @module
 */

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<{ kind: string }>) => void) | null;
  postMessage(message: unknown): void;
};
scope.onmessage = (event) => {
  if (event.data.kind === "open") {
    scope.postMessage({ kind: "opened" });
    return;
  }
  throw new Error("append worker stand-in crashed on purpose");
};
