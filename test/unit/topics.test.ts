import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config';
import { topicSpecs, topicsFor } from '../../src/streams/kafka';

describe('topic names', () => {
  it('are paylink.<name> without a namespace, as Debezium and the archive expect', () => {
    const t = topicsFor({ KAFKA_TOPIC_NAMESPACE: '' });
    assert.equal(t.paymentEvents, 'paylink.payments.events.v1');
    assert.equal(t.cdcPayments, 'paylink.cdc.oltp.public.payments');
    assert.equal(t.quarantine, 'paylink.quarantine.v1');
  });

  it('put every topic of a namespace under paylink.<namespace>. (still covered by the PII scan of paylink.*)', () => {
    const prod = Object.values(topicsFor({ KAFKA_TOPIC_NAMESPACE: '' }));
    const bench = Object.values(topicsFor({ KAFKA_TOPIC_NAMESPACE: 'bench' }));
    assert.equal(bench.length, prod.length);
    for (const [i, name] of bench.entries()) {
      assert.equal(name, prod[i]!.replace(/^paylink\./, 'paylink.bench.'));
    }
    const specs = topicSpecs(loadConfig({ KAFKA_TOPIC_NAMESPACE: 'bench' })).map((s) => s.topic);
    assert.deepEqual(new Set(specs), new Set(bench));
  });

  it('rejects a namespace that would make odd topic names, naming the setting', () => {
    assert.throws(() => loadConfig({ KAFKA_TOPIC_NAMESPACE: 'Bench.X' }), /KAFKA_TOPIC_NAMESPACE/);
  });
});
