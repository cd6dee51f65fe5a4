/**
 * A stand-in append worker for tests/store_append_worker_test.ts: it opens,
 * then sends a warning that echoes the WAL sync interval it was asked for,
 * and answers "close".
 *
 * @module
 */

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<{ kind: string; walSyncMs?: number }>) => void) | null;
  postMessage(message: unknown): void;
};
scope.onmessage = (event) => {
  if (event.data.kind === "open") {
    scope.postMessage({ kind: "opened" });
    scope.postMessage({ kind: "warning", message: `walSyncMs=${event.data.walSyncMs}` });
  } else if (event.data.kind === "close") {
    scope.postMessage({ kind: "closed" });
  }
};
