/**
 * JS heap per idle session of {@linkcode ChatService} alone (issue #7): no
 * sockets, no HTTP, a store that answers from memory. Opens `--sessions`
 * sessions the way the bench clients do (open, catch-up frame, past the 1 s
 * grace), forces a full GC and prints heap bytes per session, with the real
 * options main.ts passes (message rate, idle timeout, login recheck).
 *
 * ```
 * deno run --v8-flags=--expose-gc bench/session_heap.ts --sessions 10000
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { LocalBus } from "../lib/bus_local.ts";
import { ChatService, type ChatStore } from "../lib/chat_service.ts";
import type { Connection } from "../lib/session.ts";
import type { Group } from "../lib/store.ts";

/** An idle socket: takes frames and drops them. */
const IDLE_CONNECTION: Connection = {
  send() {},
  close() {},
  bufferedAmount: 0,
};

/** Groups of 100 users (like the bench fixture); no messages anywhere. */
function memoryStore(groupSize: number): ChatStore {
  const unused = () => Promise.reject(new Error("Not used by an idle session"));
  return {
    listGroups: (userId) =>
      Promise.resolve([
        {
          id: Math.floor(userId / groupSize) + 1,
          name: "g",
          ownerId: 0,
          icon: "",
          cate: 0,
          memo: "",
          createdAt: 0,
        } satisfies Group,
      ]),
    lastSeqs: () => Promise.resolve(new Map()),
    listMessages: () => Promise.resolve([]),
    findUser: unused,
    areFriends: unused,
    isMember: unused,
    listMembers: unused,
    appendMessage: unused,
  };
}

function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("Run with --v8-flags=--expose-gc");
  gc();
  gc();
  return Deno.memoryUsage().heapUsed;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { sessions: { type: "string", default: "10000" } },
  });
  const n = Number(values.sessions);
  const bus = new LocalBus();
  const chat = new ChatService({
    store: memoryStore(100),
    bus,
    session: {
      messageRate: { perSecond: 20, burst: 40 },
      onRateLimited: () => {},
      idleTimeoutMs: 60_000,
    },
  });
  const before = heapUsed();
  const sessions = [];
  for (let i = 0; i < n; i++) {
    const session = chat.open(IDLE_CONNECTION, i + 1, {
      stillValid: () => Promise.resolve(true),
    });
    session.receive('{"cmd":30,"seqs":{},"all":true}');
    sessions.push(session);
  }
  await Promise.all(sessions.map((s) => s.settled()));
  await new Promise((r) => setTimeout(r, 1500)); // Past the catch-up grace.
  const after = heapUsed();
  const perSession = (after - before) / n;
  Deno.stdout.writeSync(
    new TextEncoder().encode(
      `${n} sessions: ${(perSession / 1024).toFixed(2)} KiB heap per session (${
        Math.round(perSession)
      } bytes)\n`,
    ),
  );
  chat.close();
  bus.close();
}

if (import.meta.main) await main();
