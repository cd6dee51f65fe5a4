/**
 * A store wrapper that times every call: each method that returns a promise
 * reports its duration (settled or rejected) to an observer. The wrapped
 * object keeps its interface, so `main.ts` hands it to everything else.
 *
 * @module
 */

/** Told the duration of every asynchronous call, in seconds. */
export type CallObserver = (op: string, seconds: number) => void;

/** Options of {@linkcode timedStore}. */
export interface TimedStoreOptions {
  /** Monotonic clock in ms. @default {performance.now} */
  readonly now?: () => number;
  /** Methods not timed (e.g. `close`). @default {["close"]} */
  readonly skip?: readonly string[];
}

/**
 * `store` with every promise-returning method timed by `observe`. Methods
 * run on the real object (its `#private` fields keep working); other
 * properties pass through.
 */
export function timedStore<T extends object>(
  store: T,
  observe: CallObserver,
  options: TimedStoreOptions = {},
): T {
  const now = options.now ?? (() => performance.now());
  const skip = new Set(options.skip ?? ["close"]);
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function" || typeof prop !== "string" || skip.has(prop)) {
        return typeof value === "function" ? value.bind(target) : value;
      }
      let fn = wrapped.get(prop);
      if (fn === undefined) {
        fn = function timed(...args: unknown[]): unknown {
          const started = now();
          const result: unknown = value.apply(target, args);
          if (result instanceof Promise) {
            const done = () => observe(prop, (now() - started) / 1000);
            result.then(done, done);
          }
          return result;
        };
        wrapped.set(prop, fn);
      }
      return fn;
    },
  });
}
