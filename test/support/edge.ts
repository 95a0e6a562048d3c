import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSpool } from '../../src/ingest/spool';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { createWebhookReceiver, parsePartners } from '../../src/ingest/webhook-receiver';
import type { Logger } from '../../src/logger';
import { type Vault, openVault } from '../../src/stores/vault';
import type { Producer } from '../../src/streams/kafka';
import { config, topics, uniqueId } from './stack';

export interface TestEdge {
  /** http://127.0.0.1:<port> of the receiver. */
  base: string;
  vault: Vault;
  close(): Promise<void>;
}

/** A webhook receiver in this process, on a free port, with a temporary spool and the real vault. */
export async function startTestEdge(producer: Producer, log: Logger): Promise<TestEdge> {
  const spoolDir = mkdtempSync(join(tmpdir(), 'paylink-test-spool-'));
  const spool = await openSpool({ dir: spoolDir, maxBytes: 8 * 1024 * 1024 });
  const vault = await openVault(config);
  const receiver = createWebhookReceiver({
    partners: parsePartners(config.WEBHOOK_PARTNERS),
    producer,
    topics,
    spool,
    tokenizer: tokenizerFromConfig(config),
    vault,
    log,
    maxBodyBytes: 64 * 1024,
    kafkaTimeoutMs: 5000,
  });
  await new Promise<void>((r) => receiver.server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}`,
    vault,
    async close() {
      await receiver.close();
      await spool.close();
      await vault.close();
      rmSync(spoolDir, { recursive: true, force: true });
    },
  };
}

/** A Stripe-style `payment.captured` event for `paymentId`; `extra` overrides fields of data.object. */
export function stripeEvent(
  paymentId: string,
  extra: Record<string, unknown> = {},
  envelope: { id?: string; created?: number } = {},
) {
  return {
    id: envelope.id ?? uniqueId('evt'),
    type: 'payment.captured',
    created: envelope.created ?? Math.floor(Date.now() / 1000),
    data: {
      object: {
        paymentId,
        merchantId: 'm-1',
        currency: 'EUR',
        captureId: 'cap1',
        amountMinor: 1999,
        platformFeeMinor: 20,
        customer: { email: 'Jane.Doe@example.com', name: 'Jane Doe', card: '4242 4242 4242 4242' },
        ...extra,
      },
    },
  };
}
