// Micro-batching for the edge: concurrent requests share one Kafka transaction and one vault insert.
// Each caller still learns whether its own items were made durable, and what became of each.

export interface Batcher<T, R = void> {
  /** Resolves to the flush's results for these items, in order ([] when the flush answers none). */
  add(items: T[]): Promise<R[]>;
}

export function createBatcher<T, R = void>(
  flush: (items: T[]) => Promise<R[] | void>,
  options: {
    maxItems: number;
    maxDelayMs: number;
    /** One flush at a time; what arrives meanwhile goes into the next one (group commit). */
    serial?: boolean;
  },
): Batcher<T, R> {
  let pending: { items: T[]; resolve: (results: R[]) => void; reject: (err: unknown) => void }[] = [];
  let count = 0;
  let timer: NodeJS.Timeout | undefined;
  let flushing = false;
  const run = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (options.serial && flushing) return; // the flush in flight starts the next one when it settles
    const batch = pending;
    pending = [];
    count = 0;
    if (batch.length === 0) return;
    flushing = true;
    void flush(batch.flatMap((b) => b.items))
      .then(
        (results) => {
          let at = 0;
          for (const b of batch) {
            b.resolve(results ? results.slice(at, at + b.items.length) : []);
            at += b.items.length;
          }
        },
        (err: unknown) => batch.forEach((b) => b.reject(err)),
      )
      .finally(() => {
        flushing = false;
        if (options.serial && pending.length > 0) run();
      });
  };
  return {
    add(items) {
      if (items.length === 0) return Promise.resolve([]);
      return new Promise<R[]>((resolve, reject) => {
        pending.push({ items, resolve, reject });
        count += items.length;
        if (count >= options.maxItems) run();
        else timer ??= setTimeout(run, options.maxDelayMs);
      });
    },
  };
}
