import type { FactOf, PaymentEvent } from '../contracts/payment-event';
import { type Random, seededRandom } from './random';

// The simulator plays the regional payment gateways: it invents payments with full lifecycles
// (partial and multiple captures, settlements with fees, refunds, chargebacks, voids, failures),
// emits their events (redelivered, reordered), and keeps the ground truth the ledger is checked against.

export const REGIONS = ['eu-west', 'us-east', 'ap-south'] as const;
const CURRENCIES = ['EUR', 'USD', 'GBP', 'JPY'] as const;
const EPOCH_MS = Date.UTC(2026, 0, 1);

export interface SimulationOptions {
  payments: number;
  seed: number;
  /** Probability that an event is delivered twice (1 = every event twice). */
  duplicateRate: number;
  /** Prefix of payment ids, so runs on a shared stack never collide. */
  runId: string;
  /** Deliver each payment's events in a random order. */
  shuffle?: boolean;
  /** This many captured payments never get their settlement: they should be flagged STUCK. */
  stuck?: number;
  /** Only the happy path: created → authorized → captured → settled, one capture. */
  happyPathOnly?: boolean;
}

export interface CurrencyTruth {
  capturedMinor: number;
  platformFeesMinor: number;
  settledGrossMinor: number;
  gatewayFeesMinor: number;
  refundedMinor: number;
  chargebacksOpenedMinor: number;
  chargebacksWonMinor: number;
  chargebacksLostMinor: number;
}

/** What really happened, per currency, in integer minor units. */
export interface GroundTruth {
  payments: number;
  uniqueEvents: number;
  moneyMovingFacts: number;
  byCurrency: Record<string, CurrencyTruth>;
  /** Payments whose settlement was withheld. */
  stuckPaymentIds: string[];
}

export interface Simulation {
  events: PaymentEvent[];
  /** Delivery order, duplicates included. */
  deliveries: PaymentEvent[];
  truth: GroundTruth;
}

const zero = (): CurrencyTruth => ({
  capturedMinor: 0,
  platformFeesMinor: 0,
  settledGrossMinor: 0,
  gatewayFeesMinor: 0,
  refundedMinor: 0,
  chargebacksOpenedMinor: 0,
  chargebacksWonMinor: 0,
  chargebacksLostMinor: 0,
});

export function simulatePayments(options: SimulationOptions): Simulation {
  if (!Number.isInteger(options.payments) || options.payments < 0) {
    throw new RangeError(`--payments must be a non-negative integer, got ${options.payments}`);
  }
  if (!(options.duplicateRate >= 0 && options.duplicateRate <= 1)) {
    throw new RangeError(`--duplicate-rate must be in [0, 1], got ${options.duplicateRate}`);
  }
  const stuck = options.stuck ?? 0;
  if (!Number.isInteger(stuck) || stuck < 0 || stuck > options.payments) {
    throw new RangeError(`--stuck must be an integer between 0 and --payments, got ${stuck}`);
  }
  const rnd = seededRandom(options.seed);
  const truth: GroundTruth = {
    payments: options.payments,
    uniqueEvents: 0,
    moneyMovingFacts: 0,
    byCurrency: {},
    stuckPaymentIds: [],
  };
  const perPayment: PaymentEvent[][] = [];

  for (let i = 0; i < options.payments; i++) {
    const withheldSettlement = i < stuck; // the first `stuck` payments are captured and never settle
    const events = simulateOne(rnd, options, i, withheldSettlement);
    const paymentId = events[0]!.paymentId;
    if (withheldSettlement) truth.stuckPaymentIds.push(paymentId);
    const t = (truth.byCurrency[events[0]!.currency] ??= zero());
    const opened = new Map<string, number>();
    for (const e of events) {
      truth.uniqueEvents += 1;
      switch (e.type) {
        case 'captured':
          t.capturedMinor += e.amountMinor;
          t.platformFeesMinor += e.platformFeeMinor;
          truth.moneyMovingFacts += 1;
          break;
        case 'settled':
          t.settledGrossMinor += e.amountMinor;
          t.gatewayFeesMinor += e.feeMinor;
          truth.moneyMovingFacts += 1;
          break;
        case 'refunded':
          t.refundedMinor += e.amountMinor;
          truth.moneyMovingFacts += 1;
          break;
        case 'chargeback_opened':
          t.chargebacksOpenedMinor += e.amountMinor;
          opened.set(e.chargebackId, e.amountMinor);
          truth.moneyMovingFacts += 1;
          break;
        case 'chargeback_won':
          t.chargebacksWonMinor += opened.get(e.chargebackId) ?? 0;
          truth.moneyMovingFacts += 1;
          break;
        case 'chargeback_lost':
          t.chargebacksLostMinor += opened.get(e.chargebackId) ?? 0;
          truth.moneyMovingFacts += 1;
          break;
        default:
          break;
      }
    }
    perPayment.push(options.shuffle ? shuffled(events, rnd) : events);
  }

  return { events: perPayment.flat(), deliveries: interleave(perPayment, options.duplicateRate, rnd), truth };
}

function simulateOne(rnd: Random, options: SimulationOptions, i: number, withheldSettlement: boolean): PaymentEvent[] {
  const region = rnd.pick(REGIONS);
  const currency = rnd.pick(CURRENCIES);
  const paymentId = `${options.runId}-p${String(i).padStart(6, '0')}`;
  const merchantId = `m-${rnd.int(1, 25)}`;
  const gateway = `gw-${region}`;
  const txRef = `${options.runId}.tx${rnd.int(100_000_000, 999_999_999)}n${i}`; // unique per run, as a gateway's refs are
  const authorizedMinor = rnd.int(500, 2_500_000);
  let t = EPOCH_MS + rnd.int(0, 86_400_000);
  let seq = 0;
  const events: PaymentEvent[] = [];
  // Every fact gets the gateway's deterministic idempotency key: gateway + transaction ref + type + sequence.
  const emit = <T extends PaymentEvent['type']>(type: T, fields: Omit<FactOf<T>, keyof Envelope | 'type'>): void => {
    t += rnd.int(50, 60_000);
    events.push({
      version: 1,
      idempotencyKey: `${gateway}:${txRef}:${type}:${seq}`,
      paymentId,
      merchantId,
      region,
      currency,
      occurredAt: new Date(t).toISOString(),
      source: 'gateway',
      sourceSequence: seq++,
      type,
      ...fields,
    } as PaymentEvent);
  };

  emit('created', { amountMinor: authorizedMinor });
  const roll = options.happyPathOnly || withheldSettlement ? 1 : rnd.next();
  if (roll < 0.06) {
    emit('failed', { reason: rnd.pick(['card_declined', 'insufficient_funds', 'do_not_honor']) });
    return events;
  }
  const split = !options.happyPathOnly && !withheldSettlement && rnd.chance(0.3);
  // Some gateways report a sale (authorize + capture at once): no separate authorization fact.
  const sale = roll >= 0.12 && !split && !options.happyPathOnly && rnd.chance(0.2);
  if (!sale) emit('authorized', { amountMinor: authorizedMinor });
  if (roll < 0.12) {
    emit('voided', {});
    return events;
  }
  const firstCapture = split
    ? rnd.int(1, authorizedMinor - 1)
    : rnd.chance(0.8) || options.happyPathOnly
      ? authorizedMinor
      : rnd.int(1, authorizedMinor);
  const captures = split ? [firstCapture, rnd.int(1, authorizedMinor - firstCapture)] : [firstCapture];
  captures.forEach((amountMinor, n) => {
    const captureId = `cap${n + 1}`;
    emit('captured', {
      captureId,
      amountMinor,
      platformFeeMinor: Math.floor((amountMinor * rnd.int(50, 300)) / 10_000),
    });
    if (!withheldSettlement) {
      emit('settled', {
        settlementId: `set${n + 1}`,
        captureId,
        amountMinor,
        feeMinor: Math.floor((amountMinor * rnd.int(10, 290)) / 10_000),
      });
    }
  });
  if (options.happyPathOnly || withheldSettlement) return events;
  const captured = captures.reduce((a, b) => a + b, 0);
  let refunded = 0;
  if (rnd.chance(0.25)) {
    const refunds = rnd.chance(0.3) ? 2 : 1;
    for (let r = 1; r <= refunds && refunded < captured; r++) {
      const amountMinor = r === refunds && rnd.chance(0.3) ? captured - refunded : rnd.int(1, captured - refunded);
      emit('refunded', { refundId: `ref${r}`, amountMinor });
      refunded += amountMinor;
    }
  }
  if (captured - refunded > 0 && rnd.chance(0.06)) {
    emit('chargeback_opened', { chargebackId: 'cb1', amountMinor: rnd.int(1, captured - refunded) });
    if (rnd.chance(0.5)) emit('chargeback_won', { chargebackId: 'cb1' });
    else emit('chargeback_lost', { chargebackId: 'cb1' });
  }
  return events;
}

type Envelope = Pick<
  PaymentEvent,
  | 'version'
  | 'idempotencyKey'
  | 'paymentId'
  | 'merchantId'
  | 'region'
  | 'currency'
  | 'occurredAt'
  | 'source'
  | 'sourceSequence'
>;

function shuffled<T>(items: T[], rnd: Random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rnd.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
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
