/**
 * A small Prometheus registry: counters, gauges and histograms with labels,
 * plus metrics read from a callback at scrape time, rendered in the text
 * exposition format (version 0.0.4). One {@linkcode Registry} instance is
 * made in `main.ts` and passed in; nothing here is module-level state.
 *
 * @module
 */

/** Label names to values; every series of a metric uses the same names. */
export type Labels = Readonly<Record<string, string>>;

/** The `Content-Type` of {@linkcode Registry.render}'s output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Default histogram buckets in seconds (1 ms to 10 s). */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  /** Sample lines without HELP/TYPE. */
  lines(): string[];
}

/** Named series of one number each, keyed by their label text. */
abstract class SeriesMetric implements Metric {
  abstract readonly type: "counter" | "gauge";
  readonly name: string;
  readonly help: string;
  #values = new Map<string, number>();

  /** Use the {@linkcode Registry} factories. */
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  /** The current value of one series (0 if never touched). */
  value(labels: Labels = {}): number {
    return this.#values.get(labelText(labels)) ?? 0;
  }

  /** Sample lines. */
  lines(): string[] {
    return [...this.#values].map(([l, v]) => `${this.name}${l} ${num(v)}`);
  }

  /** Set one series. */
  protected put(labels: Labels, value: number): void {
    this.#values.set(labelText(labels), value);
  }

  /** Add `by` to one series (one label text per call: this is on every frame's path). */
  protected add(labels: Labels, by: number): void {
    const key = labelText(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
}

/** A value that only goes up (or is reset by a restart). */
export class Counter extends SeriesMetric {
  readonly type = "counter";

  /** Add `by` (default 1, must not be negative) to the series of `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new RangeError(`Counter ${this.name} cannot go down by ${by}`);
    this.add(labels, by);
  }
}

/** A value that goes up and down. */
export class Gauge extends SeriesMetric {
  readonly type = "gauge";

  /** Set the series of `labels` to `value`. */
  set(value: number, labels: Labels = {}): void {
    this.put(labels, value);
  }

  /** Add `by` (may be negative) to the series of `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    this.add(labels, by);
  }
}

interface HistogramSeries {
  readonly labels: Labels;
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into cumulative buckets, with their sum and count. */
export class Histogram implements Metric {
  readonly type = "histogram";
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];
  #series = new Map<string, HistogramSeries>();

  /** Use {@linkcode Registry.histogram}. */
  constructor(name: string, help: string, buckets: readonly number[]) {
    if (buckets.length === 0 || buckets.some((b, i) => i > 0 && b <= buckets[i - 1]!)) {
      throw new RangeError(`Histogram ${name} needs increasing buckets`);
    }
    this.name = name;
    this.help = help;
    this.buckets = [...buckets];
  }

  /** Count one observation of `value` in the series of `labels`. */
  observe(value: number, labels: Labels = {}): void {
    this.#add(this.#seriesOf(labels), value);
  }

  /**
   * A function observing into the series of `labels`, for hot paths: the
   * label text is built once here, not on every observation. The series
   * appears (at zero) when the function is made.
   */
  observer(labels: Labels = {}): (value: number) => void {
    const series = this.#seriesOf(labels);
    return (value) => this.#add(series, value);
  }

  #seriesOf(labels: Labels): HistogramSeries {
    const key = labelText(labels);
    let s = this.#series.get(key);
    if (s === undefined) {
      s = { labels: { ...labels }, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    return s;
  }

  #add(s: HistogramSeries, value: number): void {
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]!) s.counts[i]!++;
    }
    s.sum += value;
    s.count++;
  }

  /** How many observations one series has. */
  count(labels: Labels = {}): number {
    return this.#series.get(labelText(labels))?.count ?? 0;
  }

  /** Sample lines: `_bucket` (cumulative, with `+Inf`), `_sum`, `_count`. */
  lines(): string[] {
    const out: string[] = [];
    for (const [key, s] of this.#series) {
      this.buckets.forEach((le, i) => {
        out.push(`${this.name}_bucket${labelText({ ...s.labels, le: num(le) })} ${s.counts[i]}`);
      });
      out.push(`${this.name}_bucket${labelText({ ...s.labels, le: "+Inf" })} ${s.count}`);
      out.push(`${this.name}_sum${key} ${num(s.sum)}`);
      out.push(`${this.name}_count${key} ${s.count}`);
    }
    return out;
  }
}

/** A metric whose series are read from `read()` at each scrape. */
class Collected implements Metric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  #read: () => Iterable<readonly [Labels, number]>;

  constructor(
    name: string,
    help: string,
    options: { type: "counter" | "gauge"; read: () => Iterable<readonly [Labels, number]> },
  ) {
    this.name = name;
    this.help = help;
    this.type = options.type;
    this.#read = options.read;
  }

  lines(): string[] {
    const out: string[] = [];
    for (const [labels, value] of this.#read()) {
      out.push(`${this.name}${labelText(labels)} ${num(value)}`);
    }
    return out;
  }
}

/** Options of {@linkcode Registry.collect}. */
export interface CollectOptions {
  /** Prometheus type of the series. @default {"gauge"} */
  type?: "counter" | "gauge";
}

/** The set of metrics one process exposes. Names must be unique. */
export class Registry {
  #metrics = new Map<string, Metric>();

  #add<M extends Metric>(metric: M): M {
    if (!NAME.test(metric.name)) throw new TypeError(`Invalid metric name "${metric.name}"`);
    if (this.#metrics.has(metric.name)) {
      throw new TypeError(`Metric "${metric.name}" is already registered`);
    }
    this.#metrics.set(metric.name, metric);
    return metric;
  }

  /** Register a counter. */
  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }

  /** Register a gauge. */
  gauge(name: string, help: string): Gauge {
    return this.#add(new Gauge(name, help));
  }

  /** Register a histogram. @default buckets {DEFAULT_BUCKETS} */
  histogram(
    name: string,
    help: string,
    options: { buckets?: readonly number[] } = {},
  ): Histogram {
    return this.#add(new Histogram(name, help, options.buckets ?? DEFAULT_BUCKETS));
  }

  /**
   * Register a metric read at scrape time: `read` returns its series as
   * `[labels, value]` pairs (e.g. a session count, or a counter kept by
   * another object). A throwing `read` fails the scrape.
   */
  collect(
    name: string,
    help: string,
    read: () => Iterable<readonly [Labels, number]>,
    options: CollectOptions = {},
  ): void {
    this.#add(new Collected(name, help, { type: options.type ?? "gauge", read }));
  }

  /** Every metric in the text exposition format, in registration order. */
  render(): string {
    const out: string[] = [];
    for (const m of this.#metrics.values()) {
      out.push(`# HELP ${m.name} ${m.help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n")}`);
      out.push(`# TYPE ${m.name} ${m.type}`);
      out.push(...m.lines());
    }
    return out.join("\n") + "\n";
  }
}

/** `{a="1",b="x"}` with escaped values, sorted by name; "" for no labels. */
function labelText(labels: Labels): string {
  // No labels is the common case on hot paths: answer it without allocating.
  let any = false;
  for (const _ in labels) {
    any = true;
    break;
  }
  if (!any) return "";
  const names = Object.keys(labels).sort();
  const parts = names.map((n) => {
    if (!LABEL.test(n)) throw new TypeError(`Invalid label name "${n}"`);
    const v = labels[n]!.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
    return `${n}="${v}"`;
  });
  return `{${parts.join(",")}}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
