import type { PaymentEvent } from '../contracts/payment-event';
import { CARD_TESTING_BIN } from './gateway-feed';
import type { Simulation } from './payments';
import { seededRandom } from './random';

// Fraud the simulator injects on top of a day of payments, seeded, so the fraud views have something to
// catch and the tests know exactly what: a card-testing burst (many small attempts on one merchant with
// cards of one BIN, mostly refused) and a decline spike at one region's gateway. Every injected payment
// is created and then refused, or authorized and voided: none moves money, so the ledger truth is untouched.

const EPOCH_MS = Date.UTC(2026, 0, 1);

export interface InjectedFraud {
  cardTesting: {
    merchantId: string;
    bin: string;
    region: string;
    windowStart: string;
    attempts: number;
    declined: number;
  };
  declineSpike: { gateway: string; region: string; windowStart: string; attempts: number; declined: number };
}

export interface FraudInjectionOptions {
  seed: number;
  runId: string;
  /** Card-testing attempts (within one minute) and how many of them are refused. */
  cardTestingAttempts?: number;
  cardTestingDeclined?: number;
  /** Decline-spike attempts (within one five-minute window) and how many are refused. */
  spikeAttempts?: number;
  spikeDeclined?: number;
}

const DECLINE_CODES = ['card_declined', 'insufficient_funds', 'do_not_honor', 'invalid_card', 'expired_card'] as const;

/** The simulation with the fraud scenarios added (their events after the regular deliveries) and the truth updated. */
export function injectFraud(sim: Simulation, options: FraudInjectionOptions): Simulation & { injected: InjectedFraud } {
  const rnd = seededRandom(options.seed ^ 0x5eed_f4a0);
  const ctAttempts = options.cardTestingAttempts ?? 30;
  const ctDeclined = options.cardTestingDeclined ?? 27;
  const spAttempts = options.spikeAttempts ?? 60;
  const spDeclined = options.spikeDeclined ?? 42;
  const cardTesting = { merchantId: 'm-7', region: 'eu-west', start: EPOCH_MS + 10 * 3_600_000 };
  const spike = { region: 'ap-south', start: EPOCH_MS + 16 * 3_600_000 };
  const events: PaymentEvent[] = [];

  const payment = (
    paymentId: string,
    merchantId: string,
    region: string,
    currency: string,
    amountMinor: number,
    at: number,
    refused: boolean,
  ): void => {
    const gateway = `gw-${region}`;
    const txRef = `${options.runId}.${paymentId.slice(paymentId.lastIndexOf('-') + 1)}`;
    const base = { version: 1 as const, paymentId, merchantId, region, currency, source: 'gateway' as const };
    const fact = (type: PaymentEvent['type'], seq: number, t: number, fields: Record<string, unknown>) =>
      ({
        ...base,
        idempotencyKey: `${gateway}:${txRef}:${type}:${seq}`,
        occurredAt: new Date(t).toISOString(),
        sourceSequence: seq,
        type,
        ...fields,
      }) as PaymentEvent;
    events.push(fact('created', 0, at - 1, { amountMinor }));
    if (refused) {
      events.push(fact('failed', 1, at, { reason: rnd.pick(DECLINE_CODES) }));
    } else {
      events.push(fact('authorized', 1, at, { amountMinor }));
      events.push(fact('voided', 2, at + 1_000, {}));
    }
  };

  // The card tester: one merchant, one BIN, tiny amounts, within 40 s of one minute.
  for (let i = 0; i < ctAttempts; i++) {
    const at = cardTesting.start + 1_000 + Math.floor((i * 39_000) / ctAttempts);
    payment(
      `${options.runId}-ct${i}`,
      cardTesting.merchantId,
      cardTesting.region,
      'EUR',
      rnd.int(100, 250),
      at,
      i < ctDeclined,
    );
  }
  // The failing gateway: many merchants, ordinary amounts, most refused, within four minutes of one window.
  for (let i = 0; i < spAttempts; i++) {
    const at = spike.start + 2_000 + Math.floor((i * 236_000) / spAttempts);
    const merchantId = `m-${rnd.int(1, 25)}`;
    payment(
      `${options.runId}-ds${i}`,
      merchantId,
      spike.region,
      'USD',
      rnd.int(500, 250_000),
      at,
      i % 10 < (spDeclined * 10) / spAttempts,
    );
  }

  const truth = { ...sim.truth, byCurrency: { ...sim.truth.byCurrency } };
  truth.payments += ctAttempts + spAttempts;
  truth.uniqueEvents += events.length;
  return {
    events: [...sim.events, ...events],
    deliveries: [...sim.deliveries, ...events],
    truth,
    injected: {
      cardTesting: {
        merchantId: cardTesting.merchantId,
        bin: CARD_TESTING_BIN,
        region: cardTesting.region,
        windowStart: new Date(cardTesting.start).toISOString(),
        attempts: ctAttempts,
        declined: ctDeclined,
      },
      declineSpike: {
        gateway: `gw-${spike.region}`,
        region: spike.region,
        windowStart: new Date(spike.start).toISOString(),
        attempts: spAttempts,
        declined: events.filter((e) => e.type === 'failed' && e.paymentId.includes('-ds')).length,
      },
    },
  };
}
