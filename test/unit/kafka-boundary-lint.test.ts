import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

// kafkajs stays inside src/streams/kafka.ts (and the stack installer): the rule is only worth something if it fires.
describe('kafkajs boundary lint', () => {
  const code = [
    "import { Kafka } from 'kafkajs';",
    "import type { Producer } from 'kafkajs';",
    'export const made = (p: Producer): unknown => [new Kafka({ brokers: [] }), p];',
  ].join('\n');
  const kafkajsErrors = async (filePath: string) => {
    const [result] = await new ESLint().lintText(code, { filePath });
    assert.ok(result);
    return result.messages.filter((m) => m.ruleId === '@typescript-eslint/no-restricted-imports');
  };

  it('rejects a kafkajs import, a type-only one too, anywhere else in src/', async () => {
    for (const file of [
      'src/ingest/webhook-receiver.ts',
      'src/streams/payment-router.ts',
      'src/quality/quality-consumer.ts',
    ]) {
      const errors = await kafkajsErrors(file);
      assert.equal(errors.length, 2, `${file}: ${JSON.stringify(errors)}`);
      assert.match(errors[0]!.message, /src\/streams\/kafka\.ts/);
    }
  });

  it('allows it in src/streams/kafka.ts and the stack installer', async () => {
    assert.deepEqual(await kafkajsErrors('src/streams/kafka.ts'), []);
    assert.deepEqual(await kafkajsErrors('src/stack/kafka-service.ts'), []);
  });
});
