import { z } from 'zod';

// One config loader: every address comes from the environment, with local-stack defaults,
// so the same code runs against MSK, RDS, S3, Temporal Cloud and Snowflake.
const Env = z.object({
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

  // -- CDC of PayLink's OLTP database (src/ingest/cdc) --

  // -- partner API polling (src/workflows/partner-poll.ts, src/activities/partner-poll.ts) --

  // -- data quality: schema drift (src/quality) --

  KAFKA_BROKERS: z.string().default('127.0.0.1:9092'),
  KAFKA_CLIENT_ID: z.string().default('paylink'),
  // Local single broker: RF=1. Production (MSK): 3 with min.insync.replicas=2.
  KAFKA_REPLICATION_FACTOR: z.coerce.number().int().positive().default(1),
  KAFKA_MIN_INSYNC_REPLICAS: z.coerce.number().int().positive().default(1),
  KAFKA_TOPIC_PARTITIONS: z.coerce.number().int().positive().default(6),

  DATABASE_URL: z.string().default('postgres://paylink:paylink@127.0.0.1:5433/paylink'),
  // The token vault: its own role and schema; the ledger role cannot read it.
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
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid environment configuration: ${problems}`);
  }
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
