import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

// The determinism rule is only worth something if it fires: lint a forbidden workflow file.
describe('workflow determinism lint', () => {
  it('rejects I/O imports, clock, randomness, env and floating promises in src/workflows', async () => {
    const eslint = new ESLint();
    const code = [
      "import { readFileSync } from 'node:fs';",
      "import { Pool } from 'pg';",
      'export async function badWorkflow(): Promise<number> {',
      '  void readFileSync; void Pool;',
      '  Promise.resolve(1);',
      '  setTimeout(() => undefined, 1);',
      '  return Math.random() + Number(process.env.X);',
      '}',
    ].join('\n');
    const [result] = await eslint.lintText(code, { filePath: 'src/workflows/payment.ts' });
    assert.ok(result);
    const rules = result.messages.map((m) => m.ruleId);
    for (const rule of [
      'no-restricted-imports',
      'no-restricted-properties',
      'no-restricted-globals',
      '@typescript-eslint/no-floating-promises',
    ]) {
      assert.ok(rules.includes(rule), `${rule} did not fire: ${JSON.stringify(result.messages)}`);
    }
    assert.ok(rules.filter((r) => r === 'no-restricted-imports').length >= 2);
    assert.ok(rules.filter((r) => r === 'no-restricted-globals').length >= 2);
  });

  it('allows Date in workflows: the Temporal sandbox makes it the deterministic workflow time', async () => {
    const code =
      'export function stamp(): string {\n  return new Date(Date.now()).toISOString() + new Date().toISOString();\n}\n';
    const [result] = await new ESLint().lintText(code, { filePath: 'src/workflows/payment.ts' });
    assert.deepEqual(result?.messages ?? [], []);
  });
});
