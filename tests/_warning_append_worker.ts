/**
 * A stand-in append worker for tests/store_append_worker_test.ts: it opens,
 * then sends a warning that echoes the WAL sync interval it was asked for
 * (and, asked for durable acks, a failed sync), says so if a batch reaches
 * it, and answers "close".
 *
 * @module
 */

const scope = self as unknown as {
  onmessage:
    | ((event: MessageEvent<{ kind: string; walSyncMs?: number; durable?: boolean }>) => void)
    | null;
  postMessage(message: unknown): void;
};
scope.onmessage = (event) => {
  if (event.data.kind === "open") {
    scope.postMessage({ kind: "opened" });
    scope.postMessage({ kind: "warning", message: `walSyncMs=${event.data.walSyncMs}` });
    if (event.data.durable) {
      scope.postMessage({
        kind: "syncFailed",
        // ENOSPC: a sync that failed for a full disk is still no "try later".
        error: { name: "Error", message: "No space left on device (os error 28)", code: "ENOSPC" },
      });
    }
  } else if (event.data.kind === "batch") {
    scope.postMessage({ kind: "warning", message: "a batch reached the worker" });
  } else if (event.data.kind === "close") {
    scope.postMessage({ kind: "closed" });
  }
};
