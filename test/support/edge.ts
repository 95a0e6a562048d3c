import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Producer } from 'kafkajs';
import { openSpool } from '../../src/ingest/spool';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { createWebhookReceiver, parsePartners } from '../../src/ingest/webhook-receiver';
import type { Logger } from '../../src/logger';
import { type Vault, openVault } from '../../src/stores/vault';
import { config } from './stack';

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
