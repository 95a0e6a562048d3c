import type { PaymentEvent, PaymentFactType } from '../contracts/payment-event';
import { type Random, seededRandom } from './random';

// The simulator plays the regional payment gateways: it invents payments, emits their lifecycle
// events (with redeliveries), and keeps the ground truth the ledger is checked against.

export const REGIONS = ['eu-west', 'us-east', 'ap-south'] as const;
const CURRENCIES = ['EUR', 'USD', 'GBP', 'JPY'] as const;
const LIFECYCLE: PaymentFactType[] = ['created', 'authorized', 'captured', 'settled'];
const EPOCH_MS = Date.UTC(2026, 0, 1);

export interface SimulationOptions {
  payments: number;
  seed: number;
  /** Probability that an event is delivered twice (1 = every event twice). */
  duplicateRate: number;
  /** Prefix of payment ids, so runs on a shared stack never collide. */
  runId: string;
}

/** What really happened, per currency, in integer minor units. */
export interface GroundTruth {
  payments: number;
  uniqueEvents: number;
  moneyMovingFacts: number;
  byCurrency: Record<string, { capturedMinor: number; settledGrossMinor: number; gatewayFeesMinor: number }>;
}

export interface Simulation {
  events: PaymentEvent[];
  /** Delivery order, duplicates included. */
  deliveries: PaymentEvent[];
  truth: GroundTruth;
}

export function simulatePayments(options: SimulationOptions): Simulation {
  if (!Number.isInteger(options.payments) || options.payments < 0)
    throw new RangeError(`--payments must be a non-negative integer, got ${options.payments}`);
  if (!(options.duplicateRate >= 0 && options.duplicateRate <= 1))
    throw new RangeError(`--duplicate-rate must be in [0, 1], got ${options.duplicateRate}`);
  const rnd = seededRandom(options.seed);
  const truth: GroundTruth = { payments: options.payments, uniqueEvents: 0, moneyMovingFacts: 0, byCurrency: {} };
  const perPayment: PaymentEvent[][] = [];

  for (let i = 0; i < options.payments; i++) {
    const region = rnd.pick(REGIONS);
    const currency = rnd.pick(CURRENCIES);
    const paymentId = `${options.runId}-p${String(i).padStart(6, '0')}`;
    const merchantId = `m-${rnd.int(1, 25)}`;
    const amountMinor = rnd.int(100, 2_500_000);
    const feeMinor = Math.floor((amountMinor * rnd.int(10, 290)) / 10_000); // 0.1%–2.9%, integer arithmetic
    const gateway = `gw-${region}`;
    const txRef = `tx${rnd.int(100_000_000, 999_999_999)}${i}`;
    let t = EPOCH_MS + rnd.int(0, 86_400_000);
    const events = LIFECYCLE.map((type, seq): PaymentEvent => {
      t += rnd.int(50, 60_000);
      return {
        version: 1,
        idempotencyKey: `${gateway}:${txRef}:${type}:${seq}`,
        paymentId,
        merchantId,
        region,
        type,
        amountMinor,
        currency,
        ...(type === 'settled' ? { feeMinor } : {}),
        occurredAt: new Date(t).toISOString(),
        source: 'gateway',
        sourceSequence: seq,
      };
    });
    perPayment.push(events);
    const totals = (truth.byCurrency[currency] ??= { capturedMinor: 0, settledGrossMinor: 0, gatewayFeesMinor: 0 });
    totals.capturedMinor += amountMinor;
    totals.settledGrossMinor += amountMinor;
    totals.gatewayFeesMinor += feeMinor;
    truth.uniqueEvents += events.length;
    truth.moneyMovingFacts += 2; // captured, settled
  }

  const events = perPayment.flat();
  return { events, deliveries: interleave(perPayment, options.duplicateRate, rnd), truth };
}

/** Merges payments' streams at random, keeping each payment's order; a duplicate lands later. */
function interleave(perPayment: PaymentEvent[][], duplicateRate: number, rnd: Random): PaymentEvent[] {
  const cursors = perPayment.map(() => 0);
  const live = perPayment.map((_, i) => i);
  const out: PaymentEvent[] = [];
  const redeliveries: { at: number; event: PaymentEvent }[] = [];
  while (live.length > 0) {
    const slot = rnd.int(0, live.length - 1);
    const p = live[slot]!;
    const event = perPayment[p]![cursors[p]!]!;
    cursors[p]! += 1;
    if (cursors[p] === perPayment[p]!.length) live.splice(slot, 1);
    out.push(event);
    if (rnd.chance(duplicateRate)) redeliveries.push({ at: out.length + rnd.int(0, 400), event });
  }
  // Insert redeliveries back to front so earlier positions stay valid.
  redeliveries.sort((a, b) => b.at - a.at);
  for (const r of redeliveries) out.splice(Math.min(r.at, out.length), 0, r.event);
  return out;
}
