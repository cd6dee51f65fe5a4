/**
 * lanchat's own reading of its event loop (`lanchat_event_loop_lag_seconds`,
 * lib/loop_lag.ts), scraped from its metrics listener before and after a
 * rate step: the server's pauses, to set beside the generator's
 * (`_loop_lag.ts`) and the host's steal. ref has no such listener.
 *
 * @module
 */

import { STALL_MS } from "./_loop_lag.ts";

/** Counts of the lag histogram so far, or over a step. */
export interface ServerLoopLag {
  /** Readings (one per 100 ms probe). */
  readonly readings: number;
  /** Readings over 5 ms late. */
  readonly over5Ms: number;
}

const SERIES = "lanchat_event_loop_lag_seconds";

/** The histogram's bucket at the generator's stall threshold (5 ms: `le="0.005"`). */
const STALL_BUCKET = `${SERIES}_bucket{le="${STALL_MS / 1000}"} `;

/** {@linkcode ServerLoopLag} from a Prometheus text page; throws when the series is missing. */
export function parseServerLoopLag(page: string): ServerLoopLag {
  let count: number | undefined;
  let upTo5Ms: number | undefined;
  for (const line of page.split("\n")) {
    const value = () => Number(line.slice(line.lastIndexOf(" ") + 1));
    if (line.startsWith(`${SERIES}_count `)) count = value();
    if (line.startsWith(STALL_BUCKET)) upTo5Ms = value();
  }
  if (count === undefined || upTo5Ms === undefined || !(count >= upTo5Ms)) {
    throw new Error(`No ${SERIES} count and 5 ms bucket in the metrics page`);
  }
  return { readings: count, over5Ms: count - upTo5Ms };
}

/** Scrape `url` (lanchat's `/metrics`). */
export async function readServerLoopLag(url: string): Promise<ServerLoopLag> {
  const res = await fetch(url);
  return parseServerLoopLag(await res.text());
}

/** What happened between two readings. */
export function lagBetween(before: ServerLoopLag, after: ServerLoopLag): ServerLoopLag {
  return { readings: after.readings - before.readings, over5Ms: after.over5Ms - before.over5Ms };
}
