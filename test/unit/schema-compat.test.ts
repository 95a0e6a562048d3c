import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkSchemas } from '../../src/ops/schema-compat';
import { backwardIncompatibilities } from '../../src/quality/backward-compat';
import { REGISTERED_SCHEMAS, SCHEMAS_DIR } from '../../src/quality/schema-registry';

const fixtures = join(__dirname, '..', 'fixtures', 'schemas');
const repoRoot = join(__dirname, '..', '..');

// Each incompatible fixture changes one thing between v1 and v2: the path and rule the check must name.
const EXPECTED: Record<string, { path: string; rule: string }[]> = {
  'required-field-added': [{ path: 'merchantAccount', rule: 'required-field-added' }],
  'optional-made-required': [{ path: 'reason', rule: 'required-field-added' }],
  'allowed-value-removed': [{ path: 'success', rule: 'allowed-value-removed' }],
  'type-narrowed': [{ path: 'amount.value', rule: 'type-narrowed' }],
  'constraint-tightened': [{ path: 'id', rule: 'constraint-tightened' }],
  'additional-properties-closed': [{ path: '(root)', rule: 'additional-properties-closed' }],
  'field-removed': [{ path: 'reason', rule: 'field-removed' }],
  'pattern-changed': [{ path: 'amount.currency', rule: 'pattern-changed' }],
  'array-item-type-narrowed': [{ path: 'items[].sku', rule: 'type-narrowed' }],
  'union-branch-removed': [{ path: '(root)', rule: 'union-branch-removed' }],
};

describe('schemas:check backward compatibility', () => {
  it('passes compatible versions: optional fields added, enum widened, bounds loosened, object opened', () => {
    const report = checkSchemas(join(fixtures, 'compatible'));
    assert.deepEqual(report.problems, []);
    assert.deepEqual(
      report.checked.map((c) => [c.schema, c.versions]),
      [
        ['notification-item', [1, 2]],
        ['stripe-style-event', [1, 2, 3]],
      ],
    );
  });

  it('names each incompatible change by path and rule', () => {
    const report = checkSchemas(join(fixtures, 'incompatible'));
    const found: Record<string, { path: string; rule: string }[]> = {};
    for (const p of report.problems) (found[p.schema] ??= []).push({ path: p.path, rule: p.rule });
    assert.deepEqual(found, EXPECTED);
    assert.ok(report.problems.every((p) => p.check === 'v1 → v2' && p.detail.length > 0));
  });

  it('the repository schemas are compatible and every contract is frozen as its registered version', () => {
    assert.deepEqual(checkSchemas(SCHEMAS_DIR, REGISTERED_SCHEMAS).problems, []);
  });

  it('reads types, bounds and unions in both directions', () => {
    const int = { type: 'integer', minimum: 0 };
    assert.deepEqual(backwardIncompatibilities(int, { type: 'number' }), [], 'integer → number widens');
    assert.equal(backwardIncompatibilities({ type: 'number' }, int)[0]?.rule, 'type-narrowed');
    assert.equal(
      backwardIncompatibilities(int, { type: 'integer', exclusiveMinimum: 0 })[0]?.rule,
      'constraint-tightened',
    );
    assert.deepEqual(backwardIncompatibilities({ type: 'string' }, { type: ['string', 'null'] }), []);
    assert.equal(backwardIncompatibilities({ type: ['string', 'null'] }, { type: 'string' })[0]?.rule, 'type-narrowed');
    assert.deepEqual(backwardIncompatibilities({ const: 'a' }, { type: 'string', enum: ['a', 'b'] }), []);
    assert.deepEqual(backwardIncompatibilities({ type: 'string' }, {}), [], 'anything accepts a string');
    assert.equal(backwardIncompatibilities({}, { type: 'string' })[0]?.rule, 'type-narrowed');
    assert.deepEqual(
      backwardIncompatibilities(
        { type: 'object', properties: { a: { type: 'string' } } },
        { type: 'object', properties: { a: { type: 'string' }, b: { type: 'string', default: 'x' } } },
      ),
      [],
      'a field with a default is optional to old writers',
    );
    assert.equal(
      backwardIncompatibilities(
        { type: 'object', not: { required: ['a'] } },
        { type: 'object', not: { required: [] } },
      )[0]?.rule,
      'unsupported-change',
      'a keyword the check cannot reason about is never passed silently',
    );
  });

  it('the command exits 1 with a report for incompatible versions and 0 for compatible ones', () => {
    const run = (dir: string) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'src/ops/schema-compat.ts', '--dir', dir], {
        cwd: repoRoot,
        encoding: 'utf8',
      });
    const bad = run(join(fixtures, 'incompatible'));
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stdout, /INCOMPATIBLE \(10\)/);
    assert.match(bad.stdout, /type-narrowed v1 → v2: amount\.value: type-narrowed/);
    const good = run(join(fixtures, 'compatible'));
    assert.equal(good.status, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /OK: every version is backward compatible/);
  });
});
