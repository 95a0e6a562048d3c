import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { workflowTexts } from '../../src/ops/pii-scan';
import { scanForPii } from '../../src/quality/pii-scanner';

const json = (value: unknown): { data: Uint8Array } => ({ data: Buffer.from(JSON.stringify(value)) });

// What the leak scan reads of a Temporal run, with the place each finding is reported at.
describe('pii-scan: Temporal workflow texts', () => {
  it('reads the id, start input, memo, signals, activity inputs and markers, each at its place', () => {
    const events = [
      {
        eventId: 1,
        workflowExecutionStartedEventAttributes: {
          input: { payloads: [json({ email: 'jane.doe@example.com' })] },
          memo: { fields: { ref: json('INV4000056655665556') } },
        },
      },
      {
        eventId: 5,
        workflowExecutionSignaledEventAttributes: {
          signalName: 'paymentFact',
          input: { payloads: [json({ note: 'call (415) 555-2671' })] },
        },
      },
      {
        eventId: 7,
        activityTaskScheduledEventAttributes: { input: { payloads: [json({ iban: 'DE89370400440532013000' })] } },
      },
      {
        eventId: 9,
        markerRecordedEventAttributes: { details: { data: { payloads: [json({ card: 5555555555554444 })] } } },
      },
      { eventId: 10, workflowTaskCompletedEventAttributes: {} },
    ] as unknown as Parameters<typeof workflowTexts>[2];
    const found = workflowTexts('payment/pay_4242424242424242', 'r1', events).flatMap(([where, text]) =>
      scanForPii(text).map((f) => `${f.kind} @ ${where}`),
    );
    assert.deepEqual(found, [
      'pan @ workflow payment/pay_4242424242424242 run r1 id',
      'email @ workflow payment/pay_4242424242424242 run r1 event 1 start input',
      'pan @ workflow payment/pay_4242424242424242 run r1 event 1 memo',
      'phone @ workflow payment/pay_4242424242424242 run r1 event 5 signal paymentFact',
      'iban @ workflow payment/pay_4242424242424242 run r1 event 7 activity input',
      'pan @ workflow payment/pay_4242424242424242 run r1 event 9 marker data',
    ]);
  });
});
