import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import { type Config, versionedKeys } from '../config';
import { listMigrations, migrate, vaultMigrationsDir } from './migrate';
import { createPool } from './postgres';

// The token vault: the only place originals of tokenized PAN/PII live, encrypted at rest with
// versioned AES-256-GCM keys, behind its own Postgres role. Reading one back is audited.

export interface VaultEntry {
  token: string;
  kind: string;
  original: string;
}

export interface Vault {
  /** Stores originals; a token already stored keeps its first ciphertext (tokens are deterministic). */
  store(entries: VaultEntry[]): Promise<number>;
  /** Returns the original, recording who asked and why, whether or not the token exists. */
  detokenize(token: string, request: { actor: string; purpose: string }): Promise<string | undefined>;
  close(): Promise<void>;
}

export async function openVault(config: Config): Promise<Vault> {
  const pool = createPool({ ...config, DATABASE_URL: config.VAULT_DATABASE_URL }, 4);
  await migrate(pool, listMigrations(vaultMigrationsDir), 'vault.schema_migrations');
  return createVault(pool, versionedKeys('VAULT_ENCRYPTION_KEYS', config.VAULT_ENCRYPTION_KEYS));
}

export function createVault(pool: Pool, keyring: { keys: Map<number, Buffer>; active: number }): Vault {
  const activeKey = keyring.keys.get(keyring.active)!;
  return {
    async store(entries) {
      if (entries.length === 0) return 0;
      const rows = entries.map((e) => {
        const iv = randomBytes(12);
        const cipher = createCipheriv('aes-256-gcm', activeKey, iv);
        cipher.setAAD(Buffer.from(e.token)); // binds the ciphertext to its token
        const ciphertext = Buffer.concat([cipher.update(e.original, 'utf8'), cipher.final()]);
        return { ...e, iv, ciphertext, tag: cipher.getAuthTag() };
      });
      const result = await pool.query(
        `insert into vault.tokens (token, kind, key_version, iv, ciphertext, auth_tag)
         select * from unnest($1::text[], $2::text[], $3::int[], $4::bytea[], $5::bytea[], $6::bytea[])
         on conflict (token) do nothing`,
        [
          rows.map((r) => r.token),
          rows.map((r) => r.kind),
          rows.map(() => keyring.active),
          rows.map((r) => r.iv),
          rows.map((r) => r.ciphertext),
          rows.map((r) => r.tag),
        ],
      );
      return result.rowCount ?? 0;
    },

    async detokenize(token, request) {
      if (!request.actor.trim() || !request.purpose.trim()) throw new Error('detokenize needs an actor and a purpose');
      const row = await pool.query<{ key_version: number; iv: Buffer; ciphertext: Buffer; auth_tag: Buffer }>(
        'select key_version, iv, ciphertext, auth_tag from vault.tokens where token = $1',
        [token],
      );
      const found = row.rows[0];
      await pool.query(
        'insert into vault.detokenization_audit (token, actor, purpose, found) values ($1, $2, $3, $4)',
        [token, request.actor, request.purpose, found !== undefined],
      );
      if (!found) return undefined;
      const key = keyring.keys.get(found.key_version);
      if (!key) throw new Error(`vault key version ${found.key_version} is not configured (VAULT_ENCRYPTION_KEYS)`);
      const decipher = createDecipheriv('aes-256-gcm', key, found.iv);
      decipher.setAAD(Buffer.from(token));
      decipher.setAuthTag(found.auth_tag);
      return Buffer.concat([decipher.update(found.ciphertext), decipher.final()]).toString('utf8');
    },

    close: () => pool.end(),
  };
}
