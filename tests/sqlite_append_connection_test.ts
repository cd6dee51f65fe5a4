/**
 * The connection that writes append batches (lib/_sqlite_append_connection.ts):
 * with `checkpoints: false` (the main thread's) its commits never checkpoint
 * the WAL, which a checkpoint would stall every socket for; the worker's do.
 */

import { deepStrictEqual, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { AppendConnection } from "../lib/_sqlite_append_connection.ts";
import { WAL_AUTOCHECKPOINT_PAGES } from "../lib/_sqlite_pragmas.ts";
import { requests, twoUsers } from "./_store_samples.ts";
import { delay } from "./_chat_helpers.ts";

/** Frames in the WAL of `path` now, read by a checkpoint from another connection. */
function walFrames(path: string): number {
  const reader = new DatabaseSync(path);
  try {
    const row = reader.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as { log: number };
    return row.log;
  } finally {
    reader.close();
  }
}

for (const checkpoints of [false, true]) {
  Deno.test(`an append connection with checkpoints ${checkpoints} ${checkpoints ? "checkpoints" : "leaves"} a long WAL`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "lanchat_append_connection_" });
    try {
      const path = join(dir, "chat.db");
      const [ann, bob] = await twoUsers(path);
      const connection = new AppendConnection(path, {
        busyTimeoutMs: 5000,
        walSyncMs: 0,
        checkpoints,
        warn: (message) => {
          throw new Error(message);
        },
      });
      // 16 KiB messages fill a few overflow pages each, so few commits pass the threshold.
      const content = "x".repeat(16 * 1024);
      let written = 0;
      let frames: number;
      try {
        for (let i = 0; written < WAL_AUTOCHECKPOINT_PAGES * 1.2; i++) {
          const outcomes = await connection.write(requests(ann, bob, 4, `b${i}`, content));
          deepStrictEqual(outcomes.map((o) => o.ok), [true, true, true, true]);
          written += 4 * 4; // at least four pages a message
        }
        // Before closing: the last connection to close checkpoints and removes the WAL.
        frames = walFrames(path);
      } finally {
        await connection.close();
      }
      if (checkpoints) {
        ok(frames < WAL_AUTOCHECKPOINT_PAGES, `${frames} frames left`);
      } else {
        ok(frames > WAL_AUTOCHECKPOINT_PAGES, `${frames} frames: a checkpoint ran`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("with durable acks a write resolves only after a WAL sync that began after its commit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_append_connection_" });
  try {
    const path = join(dir, "chat.db");
    const [ann, bob] = await twoUsers(path);
    const synced: string[] = [];
    let release = () => {};
    const connection = new AppendConnection(path, {
      busyTimeoutMs: 5000,
      walSyncMs: 0,
      durable: true,
      sync: async (wal) => {
        synced.push(wal);
        await new Promise<void>((resolve) => release = resolve);
      },
      warn: (message) => {
        throw new Error(message);
      },
    });
    try {
      let done = false;
      const writing = connection.write(requests(ann, bob, 2, "d")).then((outcomes) => {
        done = true;
        return outcomes;
      });
      for (let i = 0; i < 100 && synced.length === 0; i++) await delay(5);
      deepStrictEqual(synced, [`${path}-wal`], "the WAL is synced at once");
      // Committed (another connection sees it) but not answered until the sync ends.
      const reader = new DatabaseSync(path);
      const row = reader.prepare("select count(*) as n from messages").get() as { n: number };
      reader.close();
      deepStrictEqual([row.n, done], [2, false]);
      release();
      deepStrictEqual((await writing).map((o) => o.ok), [true, true]);
      // Without durable acks the same write does not wait for any sync.
      const plain = new AppendConnection(path, {
        busyTimeoutMs: 5000,
        walSyncMs: 0,
        sync: () => Promise.reject(new Error("not expected")),
        warn: () => {},
      });
      deepStrictEqual((await plain.write(requests(ann, bob, 1, "p"))).map((o) => o.ok), [true]);
      await plain.close();
    } finally {
      release();
      await connection.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failed WAL sync fails a durable write and is told; without durable acks it is only a warning", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanchat_append_connection_" });
  try {
    const path = join(dir, "chat.db");
    const [ann, bob] = await twoUsers(path);
    for (const durable of [true, false]) {
      const told: unknown[] = [];
      const warnings: string[] = [];
      const connection = new AppendConnection(path, {
        busyTimeoutMs: 5000,
        walSyncMs: 5,
        durable,
        sync: () => Promise.reject(new Error("EIO")),
        onSyncFailed: (error) => told.push(error),
        warn: (message) => warnings.push(message),
      });
      try {
        const written = connection.write(requests(ann, bob, 1, `s${durable}`));
        if (durable) {
          await rejects(written, /EIO/);
          deepStrictEqual(told.map(String), ["Error: EIO"]);
          ok(/appends are refused/.test(warnings[0] ?? ""), warnings[0]);
        } else {
          deepStrictEqual((await written).map((o) => o.ok), [true]);
          for (let i = 0; i < 100 && warnings.length === 0; i++) await delay(5);
          deepStrictEqual(told, [], "a background sync is no ack's promise");
          ok(/Background syncs .* stopped/.test(warnings[0] ?? ""), warnings[0]);
        }
      } finally {
        await connection.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
