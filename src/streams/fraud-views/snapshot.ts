// The contract between the fraud-views store (which computes the views) and what serves them (the
// HTTP API, the server-sent events and the live page). Everything here is JSON as served: event
// times and as-ofs are ISO-8601 strings, counts are integers, money is integer minor units + currency.

/** Window sizes every view is computed over (event time); `mtd` = calendar month to date (UTC). */
export type WindowSize = '1m' | '5m' | '1h' | 'mtd';

/** How old a view is: the numbers are eventually consistent (AP), so every view says its age. */
export interface ViewAge {
  /** Event-time watermark: the minimum over the view's input partitions of the newest event time seen. */
  asOf: string | null;
  /** Wall-clock now minus the time the newest aggregate of the view was flushed to the store. */
  processingLagMs: number | null;
  /** Records the fraud-views consumer group still has to read on the view's input topics. */
  consumerLag: number | null;
  /** Whether the view's newest window is still open (its end + grace period is after the as-of). */
  windowOpen: boolean;
}

export interface ViewRow {
  /** The grouping key, e.g. { cardToken } or { gateway, region } or { merchantId }. */
  key: Record<string, string>;
  window: { size: WindowSize; start: string; end: string };
  /** Named counters and rates of the row, e.g. { attempts, authorized, declined } or { declineRate, baseline }. */
  metrics: Record<string, number | string>;
}

export interface View {
  /** Stable name used in the API path (/views/<name>) and on the page, e.g. 'velocity-card'. */
  name: string;
  title: string;
  description: string;
  age: ViewAge;
  /** The rows of the newest windows, most relevant first (bounded, e.g. the top 50). */
  rows: ViewRow[];
  /** Events later than the grace period that still updated their old window. */
  lateEvents: number;
}

export interface FraudAlert {
  /** Deterministic id: rule + key + window start, so a redelivered event never raises twice. */
  id: string;
  /** Rule name as configured, e.g. 'card-testing', 'decline-spike'. */
  rule: string;
  key: Record<string, string>;
  windowStart: string;
  value: number;
  threshold: number;
  /** Event time of the event that crossed the threshold, and wall-clock time the alert was raised. */
  eventTime: string;
  raisedAt: string;
  message: string;
}

export interface ViewsSnapshot {
  generatedAt: string;
  /** Whether the last read of the store succeeded; while it is cut off the last snapshot is served. */
  store: { reachable: boolean; lastReadAt: string | null; error?: string };
  views: View[];
  /** Newest first, bounded. */
  alerts: FraudAlert[];
}

/** What the server needs from the store: one call that returns the current snapshot or throws. */
export interface ViewsSource {
  snapshot(): Promise<ViewsSnapshot>;
}
