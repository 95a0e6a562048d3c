import { resolve } from 'node:path';
import { z } from 'zod';
import { describeIssues } from './contracts/issues';
import { errorMessage } from './logger';

// One config loader: every address comes from the environment, with local-stack defaults,
// so the same code runs against MSK, RDS, S3, Temporal Cloud and Snowflake.
const Env = z.object({
  // The public dev defaults of SECRET_SETTINGS apply only in development; production refuses them (secretSetting).
  PAYLINK_ENV: z.enum(['development', 'production']).default('development'),

  // Local state of the processes (spools, vault journals, cursors, logs); the default is <clone>/.paylink.
  PAYLINK_DATA: z.string().default(resolve(__dirname, '..', '.paylink')),

  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_UI_URL: z.string().default('http://127.0.0.1:8233'),

  // A fact may wait this long for its precondition (a refund for its capture) before it is an anomaly.
  PAYMENT_PRECONDITION_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(24 * 3600_000),
  // Mirror every lifecycle step into the PaymentStatus search attribute (costs one action per step).
  PAYMENT_LIFECYCLE_SEARCH_ATTRIBUTE: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
  // SLAs per lifecycle stage, e.g. "CREATED=1h,AUTHORIZED=7d,CAPTURED=3d,DISPUTED=75d" (s, m, h, d).
  PAYMENT_SLAS: z.string().default('CREATED=1h,AUTHORIZED=7d,CAPTURED=3d,DISPUTED=75d'),

  // A process's own /healthz and /readyz (readyz says `degraded: <dependency>`), for an orchestrator's
  // probes; 0 = none. Each process needs its own port (the webhook receiver serves both on WEBHOOK_PORT).
  PAYLINK_HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(0),

  // -- the fraud-views page and API (src/streams/fraud-views/server.ts, docs/fraud-views-page.md) --
  FRAUD_PAGE_PORT: z.coerce.number().int().min(0).max(65535).default(8090),
  // 127.0.0.1 by default: the page is for operators; put it behind the ops network's proxy to share it.
  FRAUD_PAGE_HOST: z.string().min(1).default('127.0.0.1'),
  // How often the store's snapshot is read (the views advance about once a second).
  FRAUD_PAGE_POLL_INTERVAL_MS: z.coerce.number().int().min(50).default(1000),
  // A view whose as-of is this far behind the browser's clock is marked STALE (the brief's < 10 s).
  FRAUD_PAGE_STALE_AFTER_MS: z.coerce.number().int().positive().default(10_000),
  // Event-stream (SSE) clients at once; the next one is answered 429.
  FRAUD_PAGE_MAX_CLIENTS: z.coerce.number().int().positive().default(100),

  // Crash-test fault injection only (0 = off): hold each posting after commit / each signal after acceptance.
  PAYLINK_FAULT_POST_DELAY_MS: z.coerce.number().int().nonnegative().default(0),
  PAYLINK_FAULT_SIGNAL_DELAY_MS: z.coerce.number().int().nonnegative().default(0),

  // Webhook receiver (the edge): port, body limit, how long to wait for Kafka before spooling.
  WEBHOOK_PORT: z.coerce.number().int().min(0).max(65535).default(8088),
  WEBHOOK_MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(256 * 1024),
  WEBHOOK_KAFKA_TIMEOUT_MS: z.coerce.number().int().positive().default(2000),
  WEBHOOK_SPOOL_DIR: z.string().default(''),
  WEBHOOK_SPOOL_MAX_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(256 * 1024 * 1024),
  // Receiver processes (node:cluster); 0 = one per available core. Each owns <dir>/worker-<n> spools.
  WEBHOOK_WORKERS: z.coerce.number().int().min(0).max(256).default(0),
  // The edge's vault journal: originals (encrypted) fsynced here before the 2xx, drained to Postgres.
  VAULT_JOURNAL_DIR: z.string().default(''),
  VAULT_JOURNAL_MAX_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(256 * 1024 * 1024),
  // Partners as JSON: [{ id, scheme: "stripe"|"adyen", region, secrets: [...] }]; two secrets = rotation.
  // Local defaults are the simulator's partners; production sets real secrets from a secrets manager.
  WEBHOOK_PARTNERS: z.string().default(
    JSON.stringify([
      {
        id: 'acme-pay',
        scheme: 'stripe',
        region: 'eu-west',
        secrets: ['whsec_dev_acme_current', 'whsec_dev_acme_previous'],
      },
      {
        id: 'adyen-us',
        scheme: 'adyen',
        region: 'us-east',
        secrets: ['44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056'],
      },
    ]),
  ),

  // -- regional gateway connectors (src/ingest/gateways) --
  // Feeds as JSON: [{ region, gateway, url }]; local defaults are the simulated gateways (8091–8093).
  GATEWAY_FEEDS: z.string().default(
    JSON.stringify(
      ['eu-west', 'us-east', 'ap-south'].map((region, i) => ({
        region,
        gateway: `gw-${region}`,
        url: `http://127.0.0.1:${8091 + i}`,
      })),
    ),
  ),
  // One cursor file per gateway; empty = <data dir>/ingest/gateways (.paylink/ingest/gateways).
  GATEWAY_STATE_DIR: z.string().default(''),
  GATEWAY_POLL_INTERVAL_MS: z.coerce.number().int().positive().default(500),
  GATEWAY_REQUEST_TIMEOUT_MS: z.coerce.number().int().positive().default(5000),
  // A failing region retries with exponential backoff from the poll interval up to this cap.
  GATEWAY_MAX_BACKOFF_MS: z.coerce.number().int().positive().default(10_000),
  GATEWAY_PAGE_LIMIT: z.coerce.number().int().min(1).max(1000).default(200),

  // -- CDC of PayLink's OLTP database (src/ingest/cdc) --
  // PayLink's own OLTP tables (payments, ledger_entries); the role needs REPLICATION for the slot.
  OLTP_DATABASE_URL: z.string().default('postgres://paylink:paylink@127.0.0.1:5433/paylink_oltp'),
  // Slot and publication names: lower-case letters, digits and _ (Postgres' rule for slots).
  CDC_SLOT: z
    .string()
    .regex(/^[a-z0-9_]{1,63}$/)
    .default('paylink_cdc'),
  CDC_PUBLICATION: z
    .string()
    .regex(/^[a-z0-9_]{1,63}$/)
    .default('paylink_cdc'),
  CDC_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/)
    .default('public'),
  // Debezium's topic.prefix: source.name of every envelope.
  CDC_SERVER_NAME: z.string().min(1).default('paylink.cdc.oltp'),
  CDC_POLL_INTERVAL_MS: z.coerce.number().int().positive().default(500),
  // Changes per slot peek; a peek always ends on a transaction boundary, so one may exceed it.
  CDC_BATCH_SIZE: z.coerce.number().int().positive().default(5000),
  CDC_NORMALIZER_GROUP: z.string().min(1).default('cdc-normalizer'),
  // Crash-test fault injection only: exit after producing a batch and before advancing the slot.
  PAYLINK_FAULT_CDC_EXIT_BEFORE_ADVANCE: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),

  // -- partner API polling (src/workflows/partner-poll.ts, src/ingest/partner-api/poll-activities.ts) --
  // Partners' settlement APIs as JSON: [{ id, url, token, region? }]. The local default is the simulator
  // (src/simulator/partner-api.ts); production sets real tokens from a secrets manager.
  PARTNER_APIS: z
    .string()
    .default(
      JSON.stringify([{ id: 'acme-pay', url: 'http://127.0.0.1:8094', token: 'ptk_dev_acme_pay', region: 'eu-west' }]),
    ),
  PARTNER_POLL_PAGE_LIMIT: z.coerce.number().int().min(1).max(500).default(100),
  // Caught up: wait this long before the next poll (one timer action per wait).
  PARTNER_POLL_IDLE_MS: z.coerce.number().int().positive().default(30_000),
  // Continue-as-new after this many pages, or past this many history events (Temporal warns at 10,240).
  PARTNER_POLL_PAGES_BEFORE_CONTINUE: z.coerce.number().int().positive().default(500),
  PARTNER_POLL_HISTORY_EVENTS_BEFORE_CONTINUE: z.coerce.number().int().positive().default(8_000),
  // One page (fetch, tokenize, vault, produce) must finish within this; a killed worker's page re-runs after it.
  PARTNER_POLL_PAGE_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  // Crash-test fault injection only (0 = off): hold each page after it was produced, before reporting it.
  PARTNER_POLL_FAULT_PAGE_DELAY_MS: z.coerce.number().int().nonnegative().default(0),

  // -- data quality: schema drift (src/quality) --
  // One group counts drift: counts are exact per group, so a second group would count again.
  QUALITY_CONSUMER_GROUP: z.string().min(1).default('paylink-quality'),
  // Unknown paths recorded per message; a map keyed by ids must not flood quality.schema_drift.
  QUALITY_MAX_UNKNOWN_PATHS: z.coerce.number().int().positive().default(50),

  // -- the raw archive (src/streams/archiver, docs/archive.md) --
  ARCHIVER_GROUP: z.string().min(1).default('archiver'),
  // An object closes at this many NDJSON bytes (before gzip) or this age, whichever comes first. At the
  // brief's 120K events/s × 2 KB: ~12 objects/s, 4 PUT-class requests each, ≈ $630/month if the peak
  // lasted all month, ≈ $130 at the 25K/s average (docs/archive.md).
  ARCHIVE_OBJECT_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(32 * 1024 * 1024),
  ARCHIVE_OBJECT_MAX_AGE_MS: z.coerce.number().int().positive().default(300_000),
  // All partitions' open objects together; past it the largest closes early (memory bound of one archiver).
  ARCHIVE_BUFFER_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(512 * 1024 * 1024),
  // Object Lock (COMPLIANCE) on every manifested object and manifest, and the lifecycle expiry of raw/.
  ARCHIVE_RETENTION_DAYS: z.coerce.number().int().positive().default(180),
  // An object no manifest lists is deleted once this old: longer than any write-to-manifest step can take.
  ARCHIVE_ORPHAN_GRACE_MS: z.coerce.number().int().nonnegative().default(3_600_000),
  ARCHIVE_SWEEP_INTERVAL_MS: z.coerce.number().int().positive().default(600_000),
  // Listing by time (backfill): how far Kafka timestamps may run out of offset order within a partition.
  // Producers let kafkajs stamp the send time, so only clock skew and send latency separate them; a
  // partition's manifest is bisected to the first object that may hold `from`, and read until an object
  // starts this far past `to`.
  ARCHIVE_TIMESTAMP_SKEW_MS: z.coerce.number().int().nonnegative().default(300_000),
  // Crash-test fault injection only: "<point>:<n>" kills the archiver (SIGKILL) at the n-th flush's point.
  PAYLINK_FAULT_ARCHIVER_KILL: z
    .string()
    .regex(/^((object|manifest|lock|commit):[1-9][0-9]*)?$/)
    .default(''),

  // -- fraud and risk views (src/streams/fraud-views, docs/fraud-views.md) --
  FRAUD_VIEWS_GROUP: z.string().min(1).default('fraud-views'),
  // The risk store: empty = the application's DATABASE_URL (its own URL so production can move it to its own instance).
  RISK_DATABASE_URL: z.string().default(''),
  // The owner that migrates the risk schema: empty = MIGRATION_DATABASE_URL.
  RISK_MIGRATION_DATABASE_URL: z.string().default(''),
  // Aggregates are flushed (one transaction with the consumed offsets) this often.
  FRAUD_VIEWS_FLUSH_MS: z.coerce.number().int().min(10).default(250),
  // An event whose 1-minute window ended this long before the watermark is late (it still counts, as late).
  FRAUD_VIEWS_GRACE_MS: z.coerce.number().int().nonnegative().default(5_000),
  // Unflushed events held while the store is cut off; past it the consumer stops reading until a flush succeeds.
  FRAUD_VIEWS_MAX_PENDING: z.coerce.number().int().positive().default(200_000),
  // Aggregates untouched this long are swept; a month and some, so month-to-date ratios survive.
  FRAUD_VIEWS_RETENTION_DAYS: z.coerce.number().int().positive().default(40),
  // Event ids kept for de-duplication (a redelivered copy later than this counts twice).
  FRAUD_VIEWS_DEDUP_RETENTION_HOURS: z.coerce.number().int().positive().default(48),
  FRAUD_VIEWS_TOP_ROWS: z.coerce.number().int().positive().default(20),
  // card-testing: per merchant or BIN in a 1-minute window, this many small attempts, this share of them declined.
  FRAUD_SMALL_AMOUNT_MINOR: z.coerce.number().int().nonnegative().default(300),
  FRAUD_CARD_TESTING_MIN_ATTEMPTS: z.coerce.number().int().positive().default(20),
  FRAUD_CARD_TESTING_MIN_DECLINE_RATE: z.coerce.number().min(0).max(1).default(0.8),
  // … and small attempts at least this share of all the window's attempts (refusals count as small).
  FRAUD_CARD_TESTING_MIN_SMALL_SHARE: z.coerce.number().min(0).max(1).default(0.5),
  // decline-spike: per gateway × region in a 5-minute window, at least this many attempts and a decline rate
  // of at least the minimum and FACTOR × the trailing hour's rate (or the default baseline with too few attempts).
  FRAUD_DECLINE_SPIKE_MIN_ATTEMPTS: z.coerce.number().int().positive().default(40),
  FRAUD_DECLINE_SPIKE_MIN_RATE: z.coerce.number().min(0).max(1).default(0.5),
  FRAUD_DECLINE_SPIKE_FACTOR: z.coerce.number().positive().default(3),
  FRAUD_DECLINE_BASELINE_MIN_ATTEMPTS: z.coerce.number().int().positive().default(50),
  FRAUD_DECLINE_BASELINE_DEFAULT: z.coerce.number().min(0).max(1).default(0.1),
  // velocity-card: attempts on one card token within an hour.
  FRAUD_VELOCITY_CARD_MAX_ATTEMPTS: z.coerce.number().int().positive().default(10),
  // amount-outlier: an amount above mean + K·σ of the merchant's month (in that currency), after this many samples.
  FRAUD_OUTLIER_SIGMAS: z.coerce.number().positive().default(3),
  FRAUD_OUTLIER_MIN_SAMPLES: z.coerce.number().int().positive().default(30),

  KAFKA_BROKERS: z.string().default('127.0.0.1:9092'),
  KAFKA_CLIENT_ID: z.string().default('paylink'),
  // A consumer that dies without leaving (kill -9) holds its partitions this long: its group's next member
  // waits for it. 30 s rides out a stalled event loop; tests of kill -9 shorten it (the broker's minimum is 6 s).
  KAFKA_SESSION_TIMEOUT_MS: z.coerce.number().int().min(6_000).max(300_000).default(30_000),
  // Local single broker: RF=1. Production (MSK): 3 with min.insync.replicas=2.
  KAFKA_REPLICATION_FACTOR: z.coerce.number().int().positive().default(1),
  KAFKA_MIN_INSYNC_REPLICAS: z.coerce.number().int().positive().default(1),
  // Empty in production. A namespace puts every topic under paylink.<namespace>. (the edge benchmark's own topics).
  KAFKA_TOPIC_NAMESPACE: z
    .string()
    .regex(/^([a-z0-9-]{1,40})?$/, 'KAFKA_TOPIC_NAMESPACE: empty, or 1–40 of a-z, 0-9, -')
    .default(''),
  KAFKA_TOPIC_PARTITIONS: z.coerce.number().int().positive().default(6),
  // Largest record the edges produce (with a batch's overhead), under the broker's message.max.bytes
  // (1,048,588 by default); a larger event is quarantined with a claim check (docs/edge.md).
  KAFKA_MAX_RECORD_BYTES: z.coerce.number().int().min(4096).default(1_000_000),

  // The application role: owns nothing and may only read and append to the ledger (migration 004).
  DATABASE_URL: z.string().default('postgres://paylink_app:paylink_app@127.0.0.1:5433/paylink'),
  // The schemas' owner, used only to migrate (npm run migrate, the demo, test setup), never by a pipeline process.
  MIGRATION_DATABASE_URL: z.string().default('postgres://paylink:paylink@127.0.0.1:5433/paylink'),
  // The token vault's role: reads and appends to vault.tokens only; the application role cannot read the vault.
  VAULT_DATABASE_URL: z.string().default('postgres://paylink_vault:paylink_vault@127.0.0.1:5433/paylink'),
  // Versioned keys "version:base64(32 bytes)", comma-separated; the highest version is active.
  // Local defaults are public dev keys: production sets both from a secrets manager.
  VAULT_ENCRYPTION_KEYS: z.string().default('1:cGF5bGluay1kZXYtdmF1bHQta2V5LTMyLWJ5dGVzISE='),
  TOKENIZATION_KEYS: z.string().default('1:cGF5bGluay1kZXYtdG9rZW4ta2V5LTMyLWJ5dGVzISE='),

  S3_ENDPOINT: z.string().optional().default('http://127.0.0.1:9000'),
  S3_REGION: z.string().default('us-east-1'),
  S3_BUCKET: z.string().default('paylink-raw'),
  S3_ACCESS_KEY_ID: z.string().default('paylink'),
  S3_SECRET_ACCESS_KEY: z.string().default('paylink-secret'),

  // The finance load (docs/finance.md): its Schedule's interval (0 = the worker creates no schedule) and,
  // for crash tests only (0 = off), how long each load holds its Snowflake transaction open before COMMIT.
  FINANCE_LOAD_INTERVAL_S: z.coerce.number().int().min(0).max(3600).default(10),
  FINANCE_FAULT_HOLD_BEFORE_COMMIT_MS: z.coerce.number().int().nonnegative().default(0),
  // Reconciliation (docs/reconciliation.md): the UTC hour the daily Schedule reconciles yesterday (-1: none).
  RECONCILIATION_SCHEDULE_HOUR_UTC: z.coerce.number().int().min(-1).max(23).default(2),

  SNOWFLAKE_ACCOUNT: z.string().default('paylink'),
  SNOWFLAKE_USERNAME: z.string().default('paylink'),
  SNOWFLAKE_PASSWORD: z.string().default('paylink'),
  SNOWFLAKE_DATABASE: z.string().default('PAYLINK'),
  SNOWFLAKE_SCHEMA: z.string().default('FINANCE'),
  SNOWFLAKE_WAREHOUSE: z.string().default('PAYLINK_WH'),
  // Empty in production (the SDK derives the URL from the account); the local server sets it.
  SNOWFLAKE_ACCESS_URL: z.string().default('http://127.0.0.1:8765'),
});

export type Config = z.infer<typeof Env>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    const problems = describeIssues(parsed.error);
    throw new Error(`invalid environment configuration: ${problems}`);
  }
  return parsed.data;
}

// Settings whose local defaults are in this repository, each with where a secret sits in its value.
// eslint.config.mjs forbids reading them except through secretSetting (test/unit/production-guard.test.ts ties the lists).
const SECRET_SHAPES = {
  DATABASE_URL: 'url',
  MIGRATION_DATABASE_URL: 'url',
  VAULT_DATABASE_URL: 'url',
  OLTP_DATABASE_URL: 'url',
  VAULT_ENCRYPTION_KEYS: 'keys',
  TOKENIZATION_KEYS: 'keys',
  WEBHOOK_PARTNERS: 'partners',
  PARTNER_APIS: 'partners',
  S3_SECRET_ACCESS_KEY: 'whole',
  SNOWFLAKE_PASSWORD: 'whole',
} as const satisfies Partial<Record<keyof Config, 'url' | 'keys' | 'partners' | 'whole'>>;

export type SecretSetting = keyof typeof SECRET_SHAPES;
export const SECRET_SETTINGS = Object.keys(SECRET_SHAPES) as SecretSetting[];

/** A URL's password, a key ring's keys, a partner list's secrets and tokens, or the whole value. */
function secretParts(name: SecretSetting, value: string): string[] {
  switch (SECRET_SHAPES[name]) {
    case 'url': {
      const url = URL.canParse(value) ? new URL(value) : undefined;
      return [url ? decodeURIComponent(url.password) || (url.searchParams.get('password') ?? '') : ''].filter(Boolean);
    }
    case 'keys':
      return value.split(',').flatMap((entry) => {
        const key = entry.slice(entry.indexOf(':') + 1).trim();
        return key ? [Buffer.from(key, 'base64').toString('hex')] : [];
      });
    case 'partners': {
      const found: string[] = [];
      const walk = (v: unknown, key?: string): void => {
        if (typeof v === 'string' && (key === 'secrets' || key === 'token')) found.push(v);
        else if (Array.isArray(v)) for (const item of v) walk(item, key);
        else if (v && typeof v === 'object') for (const [k, item] of Object.entries(v)) walk(item, k);
      };
      try {
        walk(JSON.parse(value));
      } catch {
        // Malformed JSON: its own parser (parseJsonSetting) names the setting when it is read.
      }
      return found;
    }
    case 'whole':
      return [value];
  }
}

const DEV_DEFAULTS: Config = Env.parse({});
const DEV_SECRETS = new Set(SECRET_SETTINGS.flatMap((name) => secretParts(name, DEV_DEFAULTS[name])));

/** A production process met a secret setting that is unset, empty or public; `setting` names it, the value is never shown. */
export class DevSecretInProduction extends Error {
  constructor(
    readonly setting: SecretSetting,
    problem: string,
  ) {
    super(`${setting} ${problem}; set it from the secrets manager (PAYLINK_ENV=production)`);
    this.name = 'DevSecretInProduction';
  }
}

/**
 * The one way to read a secret setting. In production it refuses the public dev default (which is
 * also what an unset variable gets), an empty value, and a value carrying any dev secret (a dev
 * partner list with one partner added). Call it where the client or key ring is built, so a
 * process refuses at start rather than at first use.
 */
export function secretSetting(config: Config, name: SecretSetting): string {
  const value = config[name];
  if (config.PAYLINK_ENV !== 'production') return value;
  if (value === DEV_DEFAULTS[name]) throw new DevSecretInProduction(name, 'is the public development default');
  if (value.trim() === '') throw new DevSecretInProduction(name, 'is empty');
  if (secretParts(name, value).some((part) => DEV_SECRETS.has(part))) {
    throw new DevSecretInProduction(name, 'carries a public development secret');
  }
  return value;
}

/** A JSON-valued setting (partners, feeds) checked against `schema`; errors name the setting and the path, never the value. */
export function parseJsonSetting<T>(name: string, json: string, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new Error(`${name}: malformed JSON: ${errorMessage(err)}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new Error(`${name}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/** Parses "1:<base64>,2:<base64>" into keys by version; names the bad part on error. */
export function versionedKeys(name: string, spec: string): { keys: Map<number, Buffer>; active: number } {
  const keys = new Map<number, Buffer>();
  const parts = spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  for (const [i, part] of parts.entries()) {
    const m = /^(\d+):([A-Za-z0-9+/=]+)$/.exec(part);
    const key = m ? Buffer.from(m[2]!, 'base64') : undefined;
    if (!m || !key || key.length !== 32) {
      throw new Error(`${name}: expected "version:base64 of 32 bytes" at entry ${i + 1} (the value is not shown)`);
    }
    keys.set(Number(m[1]), key);
  }
  if (keys.size === 0) throw new Error(`${name} has no keys`);
  return { keys, active: Math.max(...keys.keys()) };
}

export function kafkaBrokers(config: Config): string[] {
  return config.KAFKA_BROKERS.split(',')
    .map((b) => b.trim())
    .filter(Boolean);
}
