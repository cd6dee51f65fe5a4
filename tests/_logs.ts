/** Log records captured in memory for a test (LogTape's configure, reset when disposed). */

import { configure, reset } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";

/** The records of the `chat` loggers from debug up, until disposed. */
export interface CapturedLogs extends AsyncDisposable {
  readonly records: LogRecord[];
}

/** Send every `chat` log record from debug up to memory. */
export async function captureLogs(): Promise<CapturedLogs> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { buffer: (record: LogRecord) => records.push(record) },
    loggers: [
      { category: ["chat"], lowestLevel: "debug", sinks: ["buffer"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  return { records, [Symbol.asyncDispose]: () => reset() };
}
