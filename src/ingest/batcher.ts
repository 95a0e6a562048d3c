// Micro-batching for the edge: concurrent requests share one Kafka round trip (acks=all) and one
// vault insert. Each caller still learns whether its own items were made durable.

export interface Batcher<T> {
  add(items: T[]): Promise<void>;
}

export function createBatcher<T>(
  flush: (items: T[]) => Promise<void>,
  options: { maxItems: number; maxDelayMs: number },
): Batcher<T> {
  let pending: { items: T[]; resolve: () => void; reject: (err: unknown) => void }[] = [];
  let count = 0;
  let timer: NodeJS.Timeout | undefined;
  const run = (): void => {
    const batch = pending;
    pending = [];
    count = 0;
    clearTimeout(timer);
    timer = undefined;
    flush(batch.flatMap((b) => b.items)).then(
      () => batch.forEach((b) => b.resolve()),
      (err: unknown) => batch.forEach((b) => b.reject(err)),
    );
  };
  return {
    add(items) {
      if (items.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        pending.push({ items, resolve, reject });
        count += items.length;
        if (count >= options.maxItems) run();
        else timer ??= setTimeout(run, options.maxDelayMs);
      });
    },
  };
}
