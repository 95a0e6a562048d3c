import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import type * as snowflake from 'snowflake-sdk';
import { type Config, secretSetting } from '../config';

// Finance tables in Snowflake through the official snowflake-sdk. Locally SNOWFLAKE_ACCESS_URL points
// the SDK at tools/snowflake/server.py (fakesnow on DuckDB); in production it is empty and the SDK
// derives the URL from the account. docs/snowflake-local.md says what the local server supports.

/** A `?` bind. bigint is sent as a string, so NUMBER(38,0) values beyond 2^53 bind exactly. */
export type SnowflakeBind = snowflake.Bind | bigint;
export type SnowflakeRow = Record<string, unknown>;

export interface SnowflakeQueries {
  /**
   * Runs one statement with positional `?` binds and resolves to its rows, keyed by column name as
   * Snowflake reports it (upper case unless quoted). NUMBER(p,0) values are exact JS numbers (a value
   * beyond Number.MAX_SAFE_INTEGER rejects rather than rounding); DATE/TIMESTAMP are Dates; NULL is null.
   */
  query<T extends object = SnowflakeRow>(sql: string, binds?: readonly SnowflakeBind[]): Promise<T[]>;
}

export interface SnowflakeSession extends SnowflakeQueries {
  /**
   * BEGIN, fn, COMMIT; ROLLBACK and rethrow when fn throws. Run statements through `tx`: the session
   * runs one statement or transaction at a time, so session.query() from inside fn is refused.
   */
  transaction<R>(fn: (tx: SnowflakeQueries) => Promise<R>): Promise<R>;
  close(): Promise<void>;
}

/** A failed statement; the message names the SQL (truncated), `cause` is the SDK's error. */
export class SnowflakeQueryError extends Error {
  readonly code: string | undefined;
  readonly sqlState: string | undefined;

  constructor(
    readonly sql: string,
    cause: snowflake.SnowflakeError | Error,
  ) {
    super(`${cause.message.trim()} [sql: ${truncate(sql)}]`, { cause });
    this.name = 'SnowflakeQueryError';
    const { code, sqlState } = cause as snowflake.SnowflakeError;
    this.code = code === undefined ? undefined : String(code);
    this.sqlState = sqlState;
  }
}

export interface ConnectOptions {
  /** HTTP timeout per request and a single login attempt (health probes); SDK defaults when unset. */
  timeoutMs?: number;
}

export async function connectSnowflake(config: Config, options: ConnectOptions = {}): Promise<SnowflakeSession> {
  const connection = loadSdk().createConnection({
    account: config.SNOWFLAKE_ACCOUNT,
    username: config.SNOWFLAKE_USERNAME,
    password: secretSetting(config, 'SNOWFLAKE_PASSWORD'),
    database: config.SNOWFLAKE_DATABASE,
    schema: config.SNOWFLAKE_SCHEMA,
    warehouse: config.SNOWFLAKE_WAREHOUSE,
    ...(config.SNOWFLAKE_ACCESS_URL ? { accessUrl: config.SNOWFLAKE_ACCESS_URL } : {}),
    // NULLs stay null even in columns fetched as strings (the SDK's default turns them into 'NULL').
    representNullAsStringNull: false,
    // Integers are read as strings and checked in convertNumbers(); without this the SDK would
    // also parse them as Numbers first and warn (and, it says, one day throw) on large values.
    jsTreatIntegerAsBigInt: true,
    ...(options.timeoutMs ? { timeout: options.timeoutMs, sfRetryMaxLoginRetries: 1 } : {}),
  });
  try {
    await connection.connectAsync();
  } catch (err) {
    const where = config.SNOWFLAKE_ACCESS_URL || `account ${config.SNOWFLAKE_ACCOUNT}`;
    throw new Error(`snowflake: could not connect to ${where}: ${(err as Error).message}`, { cause: err });
  }
  return new Session(connection);
}

let sdk: typeof snowflake | undefined;
function loadSdk(): typeof snowflake {
  if (!sdk) {
    // Loaded on first use: importing it makes its bundled AWS SDK print a Node 20 end-of-support
    // notice unless this is set first (not actionable here, see stores/s3.ts).
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    sdk = createRequire(__filename)('snowflake-sdk') as typeof snowflake;
    // The SDK logs every login and request at INFO; keep warnings and errors only.
    sdk.configure({ logLevel: 'WARN' });
  }
  return sdk;
}

class Session implements SnowflakeSession {
  /** Settles when the previous statement or transaction has finished: one at a time per session. */
  private tail: Promise<unknown> = Promise.resolve();
  /** Set inside transaction(): detects session.query() from fn, which would wait for itself forever. */
  private readonly inTransaction = new AsyncLocalStorage<boolean>();
  private closed = false;

  constructor(private readonly connection: snowflake.Connection) {}

  query<T extends object = SnowflakeRow>(sql: string, binds?: readonly SnowflakeBind[]): Promise<T[]> {
    if (this.inTransaction.getStore()) {
      return Promise.reject(
        new Error(`session.query() inside transaction(): use the tx argument [sql: ${truncate(sql)}]`),
      );
    }
    return this.serially(() => this.execute<T>(sql, binds));
  }

  transaction<R>(fn: (tx: SnowflakeQueries) => Promise<R>): Promise<R> {
    return this.serially(async () => {
      let open = true;
      const tx: SnowflakeQueries = {
        query: <T extends object = SnowflakeRow>(sql: string, binds?: readonly SnowflakeBind[]) =>
          open
            ? this.execute<T>(sql, binds)
            : Promise.reject(new Error(`transaction already ended [sql: ${truncate(sql)}]`)),
      };
      await this.execute('BEGIN');
      try {
        const result = await this.inTransaction.run(true, () => fn(tx));
        await this.execute('COMMIT');
        return result;
      } catch (err) {
        // A failed ROLLBACK (eg the connection is gone) must not hide the error that caused it.
        await this.execute('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        open = false;
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    await new Promise<void>((resolve, reject) => {
      this.connection.destroy((err) =>
        err ? reject(new Error(`snowflake: logout failed: ${err.message}`)) : resolve(),
      );
    });
  }

  private serially<R>(task: () => Promise<R>): Promise<R> {
    if (this.closed) return Promise.reject(new Error('snowflake session is closed'));
    const run = this.tail.then(task);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private execute<T extends object>(sql: string, binds?: readonly SnowflakeBind[]): Promise<T[]> {
    return new Promise<T[]>((resolve, reject) => {
      this.connection.execute({
        sqlText: sql,
        ...(binds && binds.length > 0 ? { binds: binds.map((b) => (typeof b === 'bigint' ? b.toString() : b)) } : {}),
        // Numbers arrive as Snowflake's exact decimal strings and are converted per column below.
        fetchAsString: ['Number'],
        complete: (err, stmt, rows) => {
          if (err) {
            reject(new SnowflakeQueryError(sql, err));
            return;
          }
          try {
            resolve(convertNumbers(stmt, (rows ?? []) as SnowflakeRow[], sql) as T[]);
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        },
      });
    });
  }
}

/** NUMBER(p,0) -> exact integer (or a loud error), other numbers -> Number, like stores/postgres.ts does for int8. */
function convertNumbers(stmt: snowflake.RowStatement, rows: SnowflakeRow[], sql: string): SnowflakeRow[] {
  const numeric = (stmt.getColumns() ?? []).filter((c) => c.isNumber());
  for (const row of rows) {
    for (const column of numeric) {
      const name = column.getName();
      const raw = row[name];
      if (typeof raw !== 'string') continue;
      const integer = column.getType() === 'fixed' && column.getScale() === 0;
      row[name] = integer ? exactInteger(raw, name, sql) : Number(raw);
    }
  }
  return rows;
}

function exactInteger(raw: string, column: string, sql: string): number {
  const n = BigInt(raw);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`column ${column} value ${raw} exceeds the safe integer range [sql: ${truncate(sql)}]`);
  }
  return Number(n);
}

function truncate(sql: string, max = 200): string {
  const oneLine = sql.replace(/\s+/g, ' ').trim();
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
}
