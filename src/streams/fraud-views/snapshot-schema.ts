import { z } from 'zod';
import type { FraudAlert, View, ViewsSnapshot } from './snapshot';

// The snapshot contract (./snapshot.ts) as zod schemas: the server checks every snapshot a source
// returns before serving it (a broken source shows as a store error, never as garbage on the page),
// and the OpenAPI document's schemas are generated from the same objects.

const time = z.iso.datetime({ offset: true });
const name = z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'expected 1–100 of A-Z a-z 0-9 . _ -');

export const ViewAgeSchema = z.object({
  asOf: time.nullable(),
  processingLagMs: z.number().nullable(),
  consumerLag: z.number().int().nullable(),
  windowOpen: z.boolean(),
});

export const ViewRowSchema = z.object({
  key: z.record(z.string(), z.string()),
  window: z.object({ size: z.enum(['1m', '5m', '1h', 'mtd']), start: time, end: time }),
  metrics: z.record(z.string(), z.union([z.number(), z.string()])),
});

export const ViewSchema = z.object({
  name,
  title: z.string(),
  description: z.string(),
  age: ViewAgeSchema,
  rows: z.array(ViewRowSchema),
  lateEvents: z.number().int().nonnegative(),
});

export const FraudAlertSchema = z.object({
  id: z.string(),
  rule: name,
  key: z.record(z.string(), z.string()),
  windowStart: time,
  value: z.number(),
  threshold: z.number(),
  eventTime: time,
  raisedAt: time,
  message: z.string(),
});

export const StoreStatusSchema = z.object({
  reachable: z.boolean(),
  lastReadAt: time.nullable(),
  error: z.string().optional(),
});

export const ViewsSnapshotSchema = z.object({
  generatedAt: time,
  store: StoreStatusSchema,
  views: z.array(ViewSchema),
  alerts: z.array(FraudAlertSchema),
});

// The schemas may not drift from the contract's interfaces: each must infer exactly that type.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameShape: [
  Same<z.infer<typeof ViewSchema>, View>,
  Same<z.infer<typeof FraudAlertSchema>, FraudAlert>,
  Same<z.infer<typeof ViewsSnapshotSchema>, ViewsSnapshot>,
] = [true, true, true];
void sameShape;
