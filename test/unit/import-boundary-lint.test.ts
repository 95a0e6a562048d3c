import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

// Imports flow one way: the rule is only worth something if a planted forbidden import trips it.
describe('runtime import boundary lint', () => {
  const lint = async (filePath: string, code: string): Promise<string[]> => {
    const [result] = await new ESLint().lintText(code, { filePath });
    return (result?.messages ?? []).map((m) => `${m.ruleId ?? 'parse'}: ${m.message}`);
  };
  const planted = [
    "import { ensureOltpSchema } from '../../simulator/oltp';",
    "import { dataDir } from '../stack/service';",
    "import { scanStores } from '../ops/pii-scan';",
    "import { startPipelineProcess } from '../starters/processes';",
    "import { config } from '../../test/support/stack';",
    'void ensureOltpSchema; void dataDir; void scanStores; void startPipelineProcess; void config;',
  ].join('\n');

  for (const file of [
    'src/ingest/cdc/reader.ts',
    'src/streams/payment-router.ts',
    'src/stores/ledger.ts',
    'src/workflows/payment.ts',
    'src/config.ts',
  ]) {
    it(`rejects simulator, stack, ops, starters and test imports in ${file}`, async () => {
      const messages = (await lint(file, planted)).filter((m) => m.startsWith('no-restricted-imports'));
      assert.equal(messages.length, 5, messages.join('\n'));
      assert.match(messages[0]!, /Runtime code never imports/);
    });
  }

  it('lets starters, ops and the simulator import runtime code', async () => {
    const code =
      "import { loadConfig } from '../config';\nimport { createPool } from '../stores/postgres';\nvoid loadConfig; void createPool;\n";
    for (const file of ['src/starters/demo.ts', 'src/ops/pii-scan.ts', 'src/simulator/oltp.ts']) {
      assert.deepEqual(
        (await lint(file, code)).filter((m) => m.startsWith('no-restricted-imports')),
        [],
        file,
      );
    }
  });
});
