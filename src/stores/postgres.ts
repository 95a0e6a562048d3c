import { Pool, types } from 'pg';
import type { Config } from '../config';

// bigint (int8) arrives as a string; money columns are bigint minor units, so parse them exactly.
types.setTypeParser(types.builtins.INT8, (value: string) => {
  const n = BigInt(value);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`int8 value ${value} exceeds the safe integer range`);
  }
  return Number(n);
});

export function createPool(config: Config, max = 10): Pool {
  return new Pool({ connectionString: config.DATABASE_URL, max, connectionTimeoutMillis: 5000 });
}
