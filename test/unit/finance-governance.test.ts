import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkGovernance } from '../../src/stores/finance-governance';
import { snowflakeMigrations } from '../../src/stores/snowflake-migrate';

// The governance set (roles, grants, masking, row access, retention) cannot run on the local server, so
// this check holds it to the finance tables: a column that loses its policy, a table without grants or
// retention, a loader allowed to rewrite history, each fails here by name.

const finance = snowflakeMigrations('finance').map((m) => m.sql);
const governance = snowflakeMigrations('governance').map((m) => m.sql);

describe('finance governance set against the finance tables', () => {
  it('covers every table, view and sensitive column', () => {
    assert.deepEqual(checkGovernance(finance, governance), []);
  });

  it('fails when a sensitive column loses its masking policy', () => {
    const line =
      'ALTER TABLE FINANCE.JOURNAL_LINES MODIFY COLUMN IDEMPOTENCY_KEY SET MASKING POLICY FINANCE.MASK_IDENTIFIER;\n';
    assert.ok(governance[0]!.includes(line));
    assert.deepEqual(checkGovernance(finance, [governance[0]!.replace(line, ''), ...governance.slice(1)]), [
      'sensitive column JOURNAL_LINES.IDEMPOTENCY_KEY has no masking policy',
    ]);
  });

  it('fails when a new table has a sensitive column and no grants, retention or masking', () => {
    const added = `${finance.join('\n')}\nCREATE TABLE IF NOT EXISTS FINANCE.REFUNDS (\n  PAYMENT_ID VARCHAR NOT NULL,\n  AMOUNT_MINOR NUMBER(38,0) NOT NULL\n);\n`;
    const problems = checkGovernance([added], governance);
    assert.ok(problems.includes('sensitive column REFUNDS.PAYMENT_ID has no masking policy'), problems.join('\n'));
    assert.ok(problems.includes('table REFUNDS: not in a 7-year locked backup set'), problems.join('\n'));
    assert.ok(problems.includes('table REFUNDS: no DATA_RETENTION_TIME_IN_DAYS'), problems.join('\n'));
  });

  it('fails when a later migration adds a sensitive column to a table without masking it', () => {
    const added = [...finance, 'ALTER TABLE FINANCE.LOAD_AUDIT ADD COLUMN IF NOT EXISTS TRACE_ID VARCHAR;\n'];
    assert.deepEqual(checkGovernance(added, governance), [
      'sensitive column LOAD_AUDIT.TRACE_ID has no masking policy',
    ]);
  });

  it('fails when the loader may update or delete history', () => {
    const loose = governance[0]!.replace(
      'GRANT SELECT, INSERT ON TABLE FINANCE.SEALS TO ROLE FINANCE_LOADER;',
      'GRANT SELECT, INSERT, DELETE ON TABLE FINANCE.SEALS TO ROLE FINANCE_LOADER;',
    );
    assert.deepEqual(checkGovernance(finance, [loose, ...governance.slice(1)]), [
      'table SEALS: FINANCE_LOADER may DELETE history',
    ]);
  });

  it('fails when the analyst reads a base table', () => {
    const loose = `${governance[0]!}\nGRANT SELECT ON TABLE FINANCE.JOURNAL_LINES TO ROLE FINANCE_ANALYST;\n`;
    assert.deepEqual(checkGovernance(finance, [loose, ...governance.slice(1)]), [
      'table JOURNAL_LINES: FINANCE_ANALYST reads base tables (only the published views)',
    ]);
  });
});
