import { statementsOf } from './snowflake-migrate';

// Checks the governance migration set against the finance table definitions, without a Snowflake:
// every sensitive column masked, every table and view granted per role, the loader never allowed to
// rewrite history, every table retained and kept 7 years. The local server cannot enforce any of it,
// so this is what keeps the two sets from drifting apart (test/unit/finance-governance.test.ts).

/** Columns that lead back to a payment, its fact or its raw events: masked wherever they appear. */
export const SENSITIVE_COLUMNS = ['PAYMENT_ID', 'POSTING_KEY', 'IDEMPOTENCY_KEY', 'TRACE_ID'] as const;
/** Loaded history: the loader may insert, never update or delete. */
export const HISTORY_TABLES = ['JOURNAL_ENTRIES', 'JOURNAL_LINES', 'LOAD_AUDIT', 'SEALS'] as const;
export const FINANCE_ROLES = ['FINANCE_LOADER', 'FINANCE_ANALYST', 'FINANCE_ADMIN', 'FINANCE_AUDITOR'] as const;
/** Tables whose rows live inside one load transaction: retained briefly, not kept for years. */
const TRANSIENT_TABLES = new Set(['STAGE_JOURNAL_ENTRIES', 'STAGE_JOURNAL_LINES']);

export interface FinanceObjects {
  tables: Map<string, string[]>;
  views: string[];
}

const name = (qualified: string): string => qualified.replace(/^FINANCE\./i, '').toUpperCase();

/** Tables (with their columns, including those later ALTERs add) and views created by the given statements. */
export function financeObjects(statements: readonly string[]): FinanceObjects {
  const tables = new Map<string, string[]>();
  const views: string[] = [];
  for (const s of statements) {
    const added = /^ALTER\s+TABLE\s+(\S+)\s+ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Z_][A-Z0-9_]*)\s/i.exec(s);
    if (added) {
      const columns = tables.get(name(added[1]!)) ?? [];
      if (!columns.includes(added[2]!.toUpperCase())) columns.push(added[2]!.toUpperCase());
      tables.set(name(added[1]!), columns);
      continue;
    }
    const table = /^CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)\s*\(([\s\S]*)\)\s*$/i.exec(s);
    if (table) {
      const columns = table[2]!
        .split('\n')
        .map((line) => /^\s*([A-Z_][A-Z0-9_]*)\s+[A-Z]/i.exec(line)?.[1]?.toUpperCase())
        .filter((c): c is string => c !== undefined);
      tables.set(name(table[1]!), columns);
      continue;
    }
    const view = /^CREATE\s+(?:OR\s+REPLACE\s+)?(?:SECURE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)/i.exec(s);
    if (view) views.push(name(view[1]!));
  }
  return { tables, views };
}

interface Grant {
  privileges: string[];
  kind: 'TABLE' | 'VIEW' | 'ALL TABLES' | 'ALL VIEWS' | 'FUTURE TABLES';
  object: string;
  role: string;
}

function grantsOf(statements: readonly string[]): Grant[] {
  const out: Grant[] = [];
  for (const s of statements) {
    const one = /^GRANT\s+([A-Z ,]+?)\s+ON\s+(TABLE|VIEW)\s+(\S+)\s+TO\s+ROLE\s+(\S+)$/i.exec(s);
    const all =
      /^GRANT\s+([A-Z ,]+?)\s+ON\s+(ALL TABLES|ALL VIEWS|FUTURE TABLES)\s+IN\s+SCHEMA\s+(\S+)\s+TO\s+ROLE\s+(\S+)$/i.exec(
        s,
      );
    const m = one ?? all;
    if (!m) continue;
    out.push({
      privileges: m[1]!.split(',').map((p) => p.trim().toUpperCase()),
      kind: m[2]!.toUpperCase() as Grant['kind'],
      object: name(m[3]!),
      role: m[4]!.toUpperCase(),
    });
  }
  return out;
}

/** Problems, in words; empty when the governance statements cover the objects. */
export function checkGovernance(financeSql: readonly string[], governanceSql: readonly string[]): string[] {
  const governance = governanceSql.flatMap(statementsOf);
  const objects = financeObjects([...financeSql.flatMap(statementsOf), ...governance]);
  // The migration runner's own table is created in code, not in a file.
  objects.tables.set('SCHEMA_MIGRATIONS', ['MIGRATION_SET', 'VERSION', 'CHECKSUM', 'APPLIED_AT']);
  const problems: string[] = [];

  const masked = new Set<string>();
  for (const s of governance) {
    const m = /^ALTER\s+TABLE\s+(\S+)\s+MODIFY\s+COLUMN\s+(\S+)\s+SET\s+MASKING\s+POLICY\s+\S+$/i.exec(s);
    if (m) masked.add(`${name(m[1]!)}.${m[2]!.toUpperCase()}`);
  }
  for (const [table, columns] of objects.tables) {
    for (const c of columns) {
      if ((SENSITIVE_COLUMNS as readonly string[]).includes(c) && !masked.has(`${table}.${c}`))
        problems.push(`sensitive column ${table}.${c} has no masking policy`);
    }
  }

  const grants = grantsOf(governance);
  const can = (role: string, privilege: string, object: string, view: boolean): boolean =>
    grants.some(
      (g) =>
        g.role === role &&
        g.privileges.includes(privilege) &&
        (g.object === object ||
          (g.kind === (view ? 'ALL VIEWS' : 'ALL TABLES') && g.object === 'FINANCE') ||
          (!view && g.kind === 'FUTURE TABLES' && g.object === 'FINANCE')),
    );
  for (const table of objects.tables.keys()) {
    for (const role of ['FINANCE_ADMIN', 'FINANCE_AUDITOR']) {
      if (!can(role, 'SELECT', table, false)) problems.push(`table ${table}: no SELECT for ${role}`);
    }
    if (can('FINANCE_ANALYST', 'SELECT', table, false))
      problems.push(`table ${table}: FINANCE_ANALYST reads base tables (only the published views)`);
  }
  for (const table of HISTORY_TABLES) {
    if (!can('FINANCE_LOADER', 'INSERT', table, false)) problems.push(`table ${table}: no INSERT for FINANCE_LOADER`);
    for (const p of ['UPDATE', 'DELETE', 'TRUNCATE'])
      if (can('FINANCE_LOADER', p, table, false)) problems.push(`table ${table}: FINANCE_LOADER may ${p} history`);
  }
  for (const view of objects.views) {
    const roles = view.startsWith('AUDIT_')
      ? ['FINANCE_AUDITOR']
      : ['FINANCE_ANALYST', 'FINANCE_ADMIN', 'FINANCE_AUDITOR'];
    for (const role of roles) {
      const inherited = role === 'FINANCE_ADMIN' && can('FINANCE_ANALYST', 'SELECT', view, true);
      if (!can(role, 'SELECT', view, true) && !inherited) problems.push(`view ${view}: no SELECT for ${role}`);
    }
  }

  const retention = new Map<string, number>();
  const backedUp = new Set<string>();
  let lockedPolicy: string | undefined;
  for (const s of governance) {
    const r = /^ALTER\s+TABLE\s+(\S+)\s+SET\s+DATA_RETENTION_TIME_IN_DAYS\s*=\s*(\d+)$/i.exec(s);
    if (r) retention.set(name(r[1]!), Number(r[2]));
    const p =
      /^CREATE\s+BACKUP\s+POLICY\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)\s+WITH\s+RETENTION\s+LOCK\b[\s\S]*EXPIRE_AFTER_DAYS\s*=\s*(\d+)/i.exec(
        s,
      );
    if (p && Number(p[2]) >= 7 * 365) lockedPolicy = name(p[1]!);
  }
  if (!lockedPolicy) problems.push('no backup policy WITH RETENTION LOCK keeping backups 7 years');
  for (const s of governance) {
    const b =
      /^CREATE\s+BACKUP\s+SET\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+FOR\s+TABLE\s+(\S+)\s+WITH\s+BACKUP\s+POLICY\s+(\S+)$/i.exec(
        s,
      );
    if (b && name(b[2]!) === lockedPolicy) backedUp.add(name(b[1]!));
  }
  for (const table of objects.tables.keys()) {
    if (!retention.has(table)) problems.push(`table ${table}: no DATA_RETENTION_TIME_IN_DAYS`);
    if (!TRANSIENT_TABLES.has(table) && !backedUp.has(table))
      problems.push(`table ${table}: not in a 7-year locked backup set`);
  }
  if (
    !governance.some(
      (s) => /ADD\s+ROW\s+ACCESS\s+POLICY\s+\S+\s+ON\s+\(REGION\)/i.test(s) && /JOURNAL_ENTRIES/i.test(s),
    )
  )
    problems.push('JOURNAL_ENTRIES has no row access policy on REGION');
  for (const role of FINANCE_ROLES) {
    if (!governance.some((s) => new RegExp(`^CREATE\\s+ROLE\\s+(IF\\s+NOT\\s+EXISTS\\s+)?${role}$`, 'i').test(s)))
      problems.push(`role ${role} is not created`);
  }
  return problems;
}
