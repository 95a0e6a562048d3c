import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { errorMessage } from '../logger';
import { type Incompatibility, backwardIncompatibilities } from '../quality/backward-compat';
import { exitFlushed } from '../streams/consumer-runner';
import {
  REGISTERED_SCHEMAS,
  type RegisteredSchema,
  SCHEMAS_DIR,
  contractJsonSchema,
  frozenSchemaFile,
  loadFrozenSchemas,
} from '../quality/schema-registry';

// `npm run schemas:check [-- --dir <dir>] [--json]`: every version vN of every frozen schema must be
// backward compatible with vN-1, and every registered contract must equal its frozen version.
// `npm run schemas:check -- --write <name>` freezes a contract's current version first.

export interface SchemaProblem extends Omit<Incompatibility, 'rule'> {
  schema: string;
  rule: Incompatibility['rule'] | 'version-numbering' | 'contract-not-frozen';
  /** `v<N-1> → v<N>` for compatibility, `contract` for an unfrozen contract, `files` for numbering. */
  check: string;
}

export interface SchemaReport {
  dir: string;
  checked: { schema: string; versions: number[] }[];
  problems: SchemaProblem[];
}

/** Checks the frozen files in `dir`; with `entries`, also that each contract is frozen as its version. */
export function checkSchemas(dir: string, entries: readonly RegisteredSchema[] = []): SchemaReport {
  const frozen = loadFrozenSchemas(dir);
  const problems: SchemaProblem[] = [];
  const checked: SchemaReport['checked'] = [];
  for (const [name, versions] of frozen) {
    const numbers = [...versions.keys()];
    checked.push({ schema: name, versions: numbers });
    numbers.forEach((v, i) => {
      if (v !== i + 1)
        problems.push({
          schema: name,
          check: 'files',
          path: '(root)',
          rule: 'version-numbering',
          detail: `versions must be v1..vN without gaps; found ${numbers.map((n) => `v${n}`).join(', ')}`,
        });
    });
    for (let i = 1; i < numbers.length; i++) {
      const from = numbers[i - 1]!;
      const to = numbers[i]!;
      for (const issue of backwardIncompatibilities(versions.get(from)!, versions.get(to)!))
        problems.push({ schema: name, check: `v${from} → v${to}`, ...issue });
    }
  }
  for (const entry of entries) {
    const versions = frozen.get(entry.name);
    const file = relative(process.cwd(), frozenSchemaFile(dir, entry.name, entry.version));
    const latest = Math.max(0, ...(versions?.keys() ?? []));
    const current = contractJsonSchema(entry);
    const frozenAs = versions?.get(entry.version);
    const base = { schema: entry.name, check: 'contract', path: '(root)', rule: 'contract-not-frozen' as const };
    if (!frozenAs)
      problems.push({
        ...base,
        detail: `${file} is missing: run \`npm run schemas:check -- --write ${entry.name}\``,
      });
    else if (!isDeepStrictEqual(frozenAs, current))
      problems.push({
        ...base,
        detail: `the contract changed since v${entry.version} was frozen: bump its version in src/quality/schema-registry.ts and run \`npm run schemas:check -- --write ${entry.name}\``,
      });
    else if (latest !== entry.version)
      problems.push({ ...base, detail: `v${latest} is frozen but the registry says v${entry.version}` });
  }
  return { dir, checked, problems };
}

/** Freezes the current contract of `name` as v<version>.json; refuses to rewrite a frozen version. */
export async function freezeSchema(dir: string, entry: RegisteredSchema): Promise<string> {
  const versions = loadFrozenSchemas(dir).get(entry.name);
  const file = frozenSchemaFile(dir, entry.name, entry.version);
  const current = contractJsonSchema(entry);
  const existing = versions?.get(entry.version);
  if (existing) {
    if (isDeepStrictEqual(existing, current)) return `${entry.name}@${entry.version} already frozen`;
    throw new Error(
      `${entry.name}@${entry.version} is frozen and the contract differs: frozen versions never change, bump the version in src/quality/schema-registry.ts`,
    );
  }
  const latest = Math.max(0, ...(versions?.keys() ?? []));
  if (entry.version !== latest + 1)
    throw new Error(`${entry.name}: the next version is v${latest + 1}, the registry says v${entry.version}`);
  // Written as prettier would, so `npm run format:check` passes on frozen files.
  const prettier = await import('prettier');
  const options = (await prettier.resolveConfig(file)) ?? {};
  const text = await prettier.format(JSON.stringify(current), { ...options, filepath: file });
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  return `froze ${entry.name}@${entry.version} as ${relative(process.cwd(), file)}`;
}

function formatReport(report: SchemaReport): string {
  const lines = report.checked.map((c) => `  ${c.schema}: ${c.versions.map((v) => `v${v}`).join(', ')}`);
  const head = `schemas in ${relative(process.cwd(), report.dir) || '.'}:\n${lines.join('\n')}`;
  if (report.problems.length === 0) return `${head}\nOK: every version is backward compatible with the previous one`;
  const problems = report.problems.map((p) => `  ${p.schema} ${p.check}: ${p.path}: ${p.rule}: ${p.detail}`);
  return `${head}\nINCOMPATIBLE (${report.problems.length}):\n${problems.join('\n')}`;
}

async function main(argv: string[]): Promise<number> {
  let dir = SCHEMAS_DIR;
  let json = false;
  const write: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--dir' && argv[i + 1]) dir = resolve(argv[++i]!);
    else if (arg === '--write' && argv[i + 1]) write.push(argv[++i]!);
    else throw new Error(`unknown argument "${arg}"; usage: schemas:check [--dir <dir>] [--json] [--write <name>|all]`);
  }
  for (const name of write) {
    const entries = name === 'all' ? REGISTERED_SCHEMAS : REGISTERED_SCHEMAS.filter((e) => e.name === name);
    if (entries.length === 0)
      throw new Error(`"${name}" is not registered; known: ${REGISTERED_SCHEMAS.map((e) => e.name).join(', ')}`);
    for (const entry of entries) process.stderr.write(`${await freezeSchema(dir, entry)}\n`);
  }
  // Contracts are compared only with the repository's own schemas/, not with a fixtures directory.
  const report = checkSchemas(dir, dir === SCHEMAS_DIR ? REGISTERED_SCHEMAS : []);
  process.stdout.write(`${json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
  return report.problems.length === 0 ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => exitFlushed(code), // a long --json report goes through a pipe whole
    (err: unknown) => {
      process.stderr.write(`schemas:check: ${errorMessage(err)}\n`);
      process.exit(2);
    },
  );
}
