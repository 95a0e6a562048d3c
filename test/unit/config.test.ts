import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kafkaBrokers, loadConfig } from '../../src/config';

describe('config', () => {
  it('has local defaults and reads overrides from the environment', () => {
    const c = loadConfig({ KAFKA_BROKERS: 'b1:9092, b2:9092', KAFKA_REPLICATION_FACTOR: '3' });
    assert.deepEqual(kafkaBrokers(c), ['b1:9092', 'b2:9092']);
    assert.equal(c.KAFKA_REPLICATION_FACTOR, 3);
    assert.equal(loadConfig({}).TEMPORAL_ADDRESS, '127.0.0.1:7233');
  });

  it('names the variable that is invalid', () => {
    assert.throws(() => loadConfig({ KAFKA_REPLICATION_FACTOR: 'three' }), /KAFKA_REPLICATION_FACTOR/);
  });
});
