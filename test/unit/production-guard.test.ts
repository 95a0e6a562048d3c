import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ESLint } from 'eslint';
import {
  type Config,
  DevSecretInProduction,
  SECRET_SETTINGS,
  type SecretSetting,
  loadConfig,
  secretSetting,
} from '../../src/config';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { createOltpPool } from '../../src/simulator/oltp';
import { createPool } from '../../src/stores/postgres';
import { createS3Client } from '../../src/stores/s3';
import { connectSnowflake } from '../../src/stores/snowflake';
import { openVault, openVaultLazily, vaultKeyring } from '../../src/stores/vault';

// PAYLINK_ENV=production must refuse every public dev default where it is read, name the setting and
// never print the value; the lint rule makes secretSetting the only way to read one.

const DEV = loadConfig({});
const key = (): string => randomBytes(32).toString('base64');
// What a secrets manager would hand a production process (hosts may say "paylink"; passwords may not be dev ones).
const PRODUCTION_SECRETS: Record<SecretSetting, string> = {
  DATABASE_URL: 'postgres://paylink_app:Qm7v-app-prod@paylink-db.example.internal:5432/paylink',
  MIGRATION_DATABASE_URL: 'postgres://paylink:Zr2k-owner-prod@paylink-db.example.internal:5432/paylink',
  VAULT_DATABASE_URL: 'postgres://paylink_vault:Hc9w-vault-prod@paylink-db.example.internal:5432/paylink',
  OLTP_DATABASE_URL: 'postgres://paylink_cdc:Tx4n-cdc-prod@paylink-oltp.example.internal:5432/paylink_oltp',
  VAULT_ENCRYPTION_KEYS: `1:${key()},2:${key()}`,
  TOKENIZATION_KEYS: `1:${key()}`,
  WEBHOOK_PARTNERS: JSON.stringify([
    { id: 'acme-pay', scheme: 'stripe', region: 'eu-west', secrets: ['whsec_prod_8f3a91c2d4'] },
  ]),
  PARTNER_APIS: JSON.stringify([
    { id: 'acme-pay', url: 'https://api.acme.example', token: 'ptk_prod_5d1e0b7a', region: 'eu-west' },
  ]),
  S3_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI-prod-k7MDENG',
  SNOWFLAKE_PASSWORD: 'sf-prod-Lq8w2Rz',
};
const production = (overrides: Record<string, string> = {}): Config =>
  loadConfig({ PAYLINK_ENV: 'production', ...PRODUCTION_SECRETS, ...overrides });
/** A production config where `name` was not set, so its dev default applies. */
const missing = (name: SecretSetting): Config => {
  const env: Record<string, string> = { PAYLINK_ENV: 'production', ...PRODUCTION_SECRETS };
  delete env[name];
  return loadConfig(env);
};

function assertRefused(run: () => unknown, name: SecretSetting, problem: RegExp, value: string): void {
  assert.throws(run, (err: Error) => {
    assert.ok(err instanceof DevSecretInProduction, `${name}: ${err.message}`);
    assert.equal(err.setting, name);
    assert.match(err.message, new RegExp(`^${name} `));
    assert.match(err.message, problem);
    assert.match(err.message, /set it from the secrets manager \(PAYLINK_ENV=production\)$/);
    if (value.trim() !== '') assert.ok(!err.message.includes(value), `${name}: the message shows the value`);
    return true;
  });
}

describe('secretSetting (PAYLINK_ENV)', () => {
  it('is development unless told otherwise, and development keeps every dev default', () => {
    assert.equal(DEV.PAYLINK_ENV, 'development');
    for (const name of SECRET_SETTINGS) assert.equal(secretSetting(DEV, name), DEV[name], name);
    assert.throws(() => loadConfig({ PAYLINK_ENV: 'prod' }), /PAYLINK_ENV/);
  });

  it('covers the secrets the issue names', () => {
    assert.deepEqual([...SECRET_SETTINGS].sort(), [
      'DATABASE_URL',
      'MIGRATION_DATABASE_URL',
      'OLTP_DATABASE_URL',
      'PARTNER_APIS',
      'S3_SECRET_ACCESS_KEY',
      'SNOWFLAKE_PASSWORD',
      'TOKENIZATION_KEYS',
      'VAULT_DATABASE_URL',
      'VAULT_ENCRYPTION_KEYS',
      'WEBHOOK_PARTNERS',
    ]);
  });

  for (const name of SECRET_SETTINGS) {
    it(`production refuses ${name} when unset (its dev default) or empty, naming it and not its value`, () => {
      assertRefused(() => secretSetting(missing(name), name), name, /is the public development default/, DEV[name]);
      assertRefused(
        () => secretSetting(production({ [name]: DEV[name] }), name),
        name,
        /development default/,
        DEV[name],
      );
      assertRefused(() => secretSetting(production({ [name]: ' ' }), name), name, /is empty/, '');
      assert.equal(secretSetting(production(), name), PRODUCTION_SECRETS[name]);
    });
  }

  it('production refuses a value that carries a dev secret inside a different value', () => {
    const devKey = (keys: string): string => keys.split(':')[1]!;
    const devWebhookPartners = JSON.parse(DEV.WEBHOOK_PARTNERS) as object[];
    const carried: [SecretSetting, string, string][] = [
      // The dev password (of any role) on a production host.
      ['DATABASE_URL', 'postgres://paylink:paylink@db.example.internal/paylink', 'paylink@'],
      ['VAULT_DATABASE_URL', 'postgres://v:paylink_vault@db.example.internal/paylink', 'paylink_vault@'],
      ['OLTP_DATABASE_URL', 'postgres://cdc@db.example.internal/oltp?password=paylink', 'password=paylink'],
      // A rotation that kept the dev key, or the other setting's dev key.
      ['VAULT_ENCRYPTION_KEYS', `1:${devKey(DEV.VAULT_ENCRYPTION_KEYS)},2:${key()}`, devKey(DEV.VAULT_ENCRYPTION_KEYS)],
      ['TOKENIZATION_KEYS', `7:${devKey(DEV.VAULT_ENCRYPTION_KEYS)}`, devKey(DEV.VAULT_ENCRYPTION_KEYS)],
      // The dev partner list with one partner added, or reformatted.
      [
        'WEBHOOK_PARTNERS',
        JSON.stringify([
          ...devWebhookPartners,
          { id: 'new', scheme: 'stripe', region: 'us-east', secrets: ['whsec_prod_1'] },
        ]),
        'whsec_dev_acme_current',
      ],
      ['PARTNER_APIS', JSON.stringify(JSON.parse(DEV.PARTNER_APIS), null, 2), 'ptk_dev_acme_pay'],
      ['SNOWFLAKE_PASSWORD', 'paylink-secret', 'paylink-secret'],
    ];
    for (const [name, value, secret] of carried) {
      assertRefused(
        () => secretSetting(production({ [name]: value }), name),
        name,
        /carries a public development secret/,
        secret,
      );
    }
  });
});

describe('the guard where each secret is used (at construction, before any I/O)', () => {
  const refusedBy = (name: SecretSetting, build: (config: Config) => unknown): void =>
    assertRefused(() => build(missing(name)), name, /is the public development default/, DEV[name]);

  it('the pools: application, migration, vault and OLTP', () => {
    refusedBy('DATABASE_URL', (c) => createPool(c));
    refusedBy('MIGRATION_DATABASE_URL', (c) => createPool(c, 1, 'MIGRATION_DATABASE_URL'));
    refusedBy('VAULT_DATABASE_URL', (c) => openVaultLazily(c));
    refusedBy('OLTP_DATABASE_URL', (c) => createOltpPool(c));
  });

  it('the key rings: tokenizer and vault (the lazy vault checks when it is built, not at first use)', async () => {
    refusedBy('TOKENIZATION_KEYS', (c) => tokenizerFromConfig(c));
    refusedBy('VAULT_ENCRYPTION_KEYS', (c) => vaultKeyring(c));
    refusedBy('VAULT_ENCRYPTION_KEYS', (c) => openVaultLazily(c));
    // An unreachable database: the refusal must come before the connection attempt.
    const unreachable = { VAULT_DATABASE_URL: 'postgres://v:prod-pw@127.0.0.1:1/paylink' };
    const config = { ...missing('VAULT_ENCRYPTION_KEYS'), ...unreachable };
    await assert.rejects(openVault(config), (err: Error) => err instanceof DevSecretInProduction);
  });

  it('S3 (only with an explicit endpoint: without one the SDK uses the instance role) and Snowflake', async () => {
    refusedBy('S3_SECRET_ACCESS_KEY', (c) => createS3Client({ ...c, S3_ENDPOINT: 'https://s3.example.internal' }));
    createS3Client({ ...missing('S3_SECRET_ACCESS_KEY'), S3_ENDPOINT: '' }).destroy();
    await assert.rejects(
      connectSnowflake({ ...missing('SNOWFLAKE_PASSWORD'), SNOWFLAKE_ACCESS_URL: 'http://127.0.0.1:1' }),
      (err: Error) => err instanceof DevSecretInProduction && err.setting === 'SNOWFLAKE_PASSWORD',
    );
  });

  it('passes a production config with every secret set', async () => {
    const config = production();
    for (const name of SECRET_SETTINGS) secretSetting(config, name);
    tokenizerFromConfig(config);
    vaultKeyring(config);
    await openVaultLazily(config).close();
    await createPool(config).end();
    await createPool(config, 1, 'MIGRATION_DATABASE_URL').end();
    await createOltpPool(config).end();
    createS3Client({ ...config, S3_ENDPOINT: 'https://s3.example.internal' }).destroy();
  });
});

describe('a production start with one dev default left', () => {
  const dir = mkdtempSync(join(tmpdir(), 'paylink-production-guard-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function start(
    entryPoint: string,
    leftAtDefault: SecretSetting,
    env: Record<string, string> = {},
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, PAYLINK_ENV: 'production', ...PRODUCTION_SECRETS, ...env };
    delete childEnv[leftAtDefault];
    const child = spawn(process.execPath, ['--import', 'tsx', entryPoint], {
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000, // a start the guard missed would run until this kills it
      killSignal: 'SIGKILL',
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('close', (c, s) => resolve([c, s])),
    );
    return { code, signal, output };
  }

  function assertRefusedStart(
    started: { code: number | null; signal: NodeJS.Signals | null; output: string },
    name: SecretSetting,
  ): void {
    const { code, signal, output } = started;
    assert.equal(signal, null, `killed, not exited: ${output}`);
    assert.ok(code !== null && code !== 0, `exit code ${code}: ${output}`);
    assert.ok(output.includes(`${name} is the public development default`), output);
    for (const value of [DEV[name], ...Object.values(PRODUCTION_SECRETS)]) {
      assert.ok(!output.includes(value), `the output shows a secret value: ${output}`);
    }
  }

  it('the webhook receiver (two cluster workers) and the payment worker and router exit non-zero naming it', async () => {
    const [receiver, worker, router] = await Promise.all([
      start('src/ingest/webhook-receiver-main.ts', 'TOKENIZATION_KEYS', {
        WEBHOOK_WORKERS: '2',
        WEBHOOK_PORT: '0',
        WEBHOOK_SPOOL_DIR: join(dir, 'spool'),
        VAULT_JOURNAL_DIR: join(dir, 'journal'),
      }),
      // Unreachable Temporal and Kafka: the refusal must come before any connection.
      start('src/workers/payment-worker-main.ts', 'DATABASE_URL', { TEMPORAL_ADDRESS: '127.0.0.1:1' }),
      start('src/streams/payment-router-main.ts', 'DATABASE_URL', {
        TEMPORAL_ADDRESS: '127.0.0.1:1',
        KAFKA_BROKERS: '127.0.0.1:1',
      }),
    ]);
    assertRefusedStart(receiver, 'TOKENIZATION_KEYS');
    assert.match(receiver.output, /receiver worker \d exited \(code 1, signal null\) before it listened/);
    assertRefusedStart(worker, 'DATABASE_URL');
    assertRefusedStart(router, 'DATABASE_URL');
  });
});

describe('secret settings lint', () => {
  it('rejects a direct read of each secret outside src/config.ts, and allows it inside', async () => {
    const eslint = new ESLint();
    const reads = SECRET_SETTINGS.map((name, i) => `export const read${i} = config.${name};`);
    const code = [
      "import { loadConfig } from '../config';",
      'const config = loadConfig();',
      ...reads,
      "export const computed = config['TOKENIZATION_KEYS'];",
      'export const { VAULT_ENCRYPTION_KEYS: destructured } = config;',
      'export const fromEnv = process.env.DATABASE_URL;',
      'export const notSecret = config.KAFKA_BROKERS;',
    ].join('\n');
    const [planted] = await eslint.lintText(code, { filePath: 'src/stores/postgres.ts' });
    assert.ok(planted);
    const flagged = new Set(planted.messages.filter((m) => m.ruleId === 'no-restricted-syntax').map((m) => m.line));
    for (let line = 3; line <= reads.length + 5; line++) {
      assert.ok(flagged.has(line), `line ${line} not flagged: ${code.split('\n')[line - 1]}`);
    }
    assert.ok(!flagged.has(reads.length + 6), 'a setting that is not secret is flagged');
    assert.match(planted.messages[0]!.message, /secretSetting\(config, name\)/);

    const inWorkflow = await eslint.lintText('export const x = (c: { DATABASE_URL: string }) => c.DATABASE_URL;', {
      filePath: 'src/workflows/payment.ts',
    });
    assert.ok(inWorkflow[0]?.messages.some((m) => m.ruleId === 'no-restricted-syntax'));

    const [inConfig] = await eslint.lintText(`${code.split('\n').slice(1).join('\n')}\nexport {};`, {
      filePath: 'src/config.ts',
    });
    assert.deepEqual(
      inConfig?.messages.filter((m) => m.ruleId === 'no-restricted-syntax'),
      [],
    );
  });
});
