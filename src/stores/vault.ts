import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import type { Pool } from 'pg';
import { type Config, secretSetting, versionedKeys } from '../config';
import { createPool } from './postgres';

// The token vault: the only place originals of tokenized PAN/PII live, encrypted at rest with
// versioned AES-256-GCM keys, behind its own Postgres role. Reading one back is audited.

export interface VaultEntry {
  token: string;
  kind: string;
  original: string;
}

/** A vault entry as stored: AES-256-GCM under key `keyVersion`, the token as associated data. */
export interface EncryptedVaultEntry {
  token: string;
  kind: string;
  keyVersion: number;
  iv: Buffer;
  ciphertext: Buffer;
  authTag: Buffer;
}

export interface VaultKeyring {
  keys: Map<number, Buffer>;
  active: number;
}

export interface Vault {
  /** Stores originals; a token already stored keeps its first ciphertext (tokens are deterministic). */
  store(entries: VaultEntry[]): Promise<number>;
  /** Stores entries encrypted elsewhere (the edge's vault journal); same conflict rule as store. */
  storeEncrypted(entries: EncryptedVaultEntry[]): Promise<number>;
  /** Returns the original, recording who asked and why, whether or not the token exists. */
  detokenize(token: string, request: { actor: string; purpose: string }): Promise<string | undefined>;
  close(): Promise<void>;
}

export function vaultKeyring(config: Config): VaultKeyring {
  return versionedKeys('VAULT_ENCRYPTION_KEYS', secretSetting(config, 'VAULT_ENCRYPTION_KEYS'));
}

const vaultPool = (config: Config): Pool => createPool(config, 4, 'VAULT_DATABASE_URL');

/**
 * Opens the vault and checks now that Postgres answers and the vault role may run its statements.
 * The vault role owns nothing and never migrates: `npm run migrate` (the owner) creates and grants.
 */
export async function openVault(config: Config): Promise<Vault> {
  const keyring = vaultKeyring(config); // before any I/O: a refused or malformed key stops the start
  const pool = vaultPool(config);
  try {
    await checkVaultGrants(pool);
  } catch (err) {
    await pool.end();
    throw err;
  }
  return createVault(pool, keyring);
}

/**
 * The vault without touching Postgres yet: the first query connects. The edge opens it this way so
 * it starts (and journals) while Postgres is down; its drainer reports a missing schema as a drain error.
 */
export function openVaultLazily(config: Config): Vault {
  const keyring = vaultKeyring(config);
  const pool = vaultPool(config);
  // An idle client losing its server must not crash the edge; the next query reports the outage.
  pool.on('error', () => undefined);
  return createVault(pool, keyring);
}

/** Fails, naming what is missing, unless the connected role may run what createVault runs (catalogs only). */
async function checkVaultGrants(pool: Pool): Promise<void> {
  const { rows } = await pool.query<{ role: string; missing: string[] }>(
    `select current_user as role, array_remove(array[
       case when not coalesce(has_schema_privilege(n.oid, 'usage'), false) then 'USAGE on schema vault' end,
       case when not coalesce(has_table_privilege(t.oid, 'select') and has_table_privilege(t.oid, 'insert'), false)
         then 'SELECT, INSERT on vault.tokens' end,
       case when not coalesce(has_table_privilege(a.oid, 'insert'), false)
         then 'INSERT on vault.detokenization_audit' end,
       case when not coalesce(has_sequence_privilege(s.oid, 'usage'), false)
         then 'USAGE on vault.detokenization_audit_audit_id_seq' end
     ], null) as missing
     from (select 1) one
     left join pg_namespace n on n.nspname = 'vault'
     left join pg_class t on t.relnamespace = n.oid and t.relname = 'tokens'
     left join pg_class a on a.relnamespace = n.oid and a.relname = 'detokenization_audit'
     left join pg_class s on s.relnamespace = n.oid and s.relname = 'detokenization_audit_audit_id_seq'`,
  );
  const { role, missing } = rows[0]!;
  if (missing.length > 0) {
    throw new Error(
      `the vault is not ready for role ${role}: missing ${missing.join('; ')}. ` +
        'Run `npm run migrate` (as MIGRATION_DATABASE_URL): the vault role owns nothing and does not migrate',
    );
  }
}

// IVs come from a pooled random buffer: one getrandom call per 4096 IVs instead of one per entry.
const IV_BYTES = 12;
const ivPool = Buffer.alloc(IV_BYTES * 4096);
let ivAt = ivPool.length;
function nextIv(): Buffer {
  if (ivAt === ivPool.length) {
    randomFillSync(ivPool);
    ivAt = 0;
  }
  const iv = Buffer.from(ivPool.subarray(ivAt, ivAt + IV_BYTES)); // a copy: the pool is refilled in place
  ivAt += IV_BYTES;
  return iv;
}

/** Encrypts with the active key; the ciphertext is bound to its token (AAD). */
export function encryptVaultEntries(entries: readonly VaultEntry[], keyring: VaultKeyring): EncryptedVaultEntry[] {
  const key = keyring.keys.get(keyring.active);
  if (!key) throw new Error(`vault key version ${keyring.active} is not configured (VAULT_ENCRYPTION_KEYS)`);
  return entries.map((e) => {
    const iv = nextIv();
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(e.token));
    const ciphertext = Buffer.concat([cipher.update(e.original, 'utf8'), cipher.final()]);
    return { token: e.token, kind: e.kind, keyVersion: keyring.active, iv, ciphertext, authTag: cipher.getAuthTag() };
  });
}

function createVault(pool: Pool, keyring: VaultKeyring): Vault {
  const storeEncrypted = async (unordered: EncryptedVaultEntry[]): Promise<number> => {
    if (unordered.length === 0) return 0;
    // Every writer locks tokens in the same order, so concurrent writers (edge, gateways, CDC) never deadlock.
    const rows = [...unordered].sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0));
    const result = await pool.query(
      `insert into vault.tokens (token, kind, key_version, iv, ciphertext, auth_tag)
       select * from unnest($1::text[], $2::text[], $3::int[], $4::bytea[], $5::bytea[], $6::bytea[])
       on conflict (token) do nothing`,
      [
        rows.map((r) => r.token),
        rows.map((r) => r.kind),
        rows.map((r) => r.keyVersion),
        rows.map((r) => r.iv),
        rows.map((r) => r.ciphertext),
        rows.map((r) => r.authTag),
      ],
    );
    return result.rowCount ?? 0;
  };
  return {
    store: (entries) => storeEncrypted(encryptVaultEntries(entries, keyring)),
    storeEncrypted,

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
      return decryptVaultEntry(
        {
          token,
          kind: '',
          keyVersion: found.key_version,
          iv: found.iv,
          ciphertext: found.ciphertext,
          authTag: found.auth_tag,
        },
        keyring,
      );
    },

    close: () => pool.end(),
  };
}

function decryptVaultEntry(entry: EncryptedVaultEntry, keyring: VaultKeyring): string {
  const key = keyring.keys.get(entry.keyVersion);
  if (!key) throw new Error(`vault key version ${entry.keyVersion} is not configured (VAULT_ENCRYPTION_KEYS)`);
  const decipher = createDecipheriv('aes-256-gcm', key, entry.iv);
  decipher.setAAD(Buffer.from(entry.token));
  decipher.setAuthTag(entry.authTag);
  return Buffer.concat([decipher.update(entry.ciphertext), decipher.final()]).toString('utf8');
}
