import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kafkaBrokers, loadConfig, versionedKeys } from '../../src/config';

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

  it('parses versioned keys, picks the highest as active, and names a bad key without printing it', () => {
    const k = (fill: string): string => Buffer.alloc(32, fill).toString('base64');
    const ring = versionedKeys('TOKENIZATION_KEYS', `1:${k('a')},3:${k('b')}`);
    assert.equal(ring.active, 3);
    assert.deepEqual(ring.keys.get(1), Buffer.alloc(32, 'a'));
    const short = Buffer.alloc(16, 'c').toString('base64');
    assert.throws(
      () => versionedKeys('VAULT_ENCRYPTION_KEYS', `1:${short}`),
      (err: Error) => {
        assert.match(err.message, /^VAULT_ENCRYPTION_KEYS: expected "version:base64 of 32 bytes"/);
        assert.ok(!err.message.includes(short.slice(0, 6)), 'no key material in the message');
        return true;
      },
    );
  });
});
