import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openSpool } from '../../src/ingest/spool';
import { VaultEntryPendingError, createVaultJournal, journaledVault } from '../../src/ingest/vault-journal';
import { createLogger } from '../../src/logger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { type Vault, openVault, openVaultLazily, vaultKeyring } from '../../src/stores/vault';
import { config, requireServices, uniqueId } from '../support/stack';

describe('token vault in Postgres', () => {
  let vault: Vault;
  const appRole = createPool(config, 2);
  const ownerRole = createPool(config, 1, 'MIGRATION_DATABASE_URL');
  const vaultRole = createPool({ ...config, DATABASE_URL: config.VAULT_DATABASE_URL }, 2);

  before(async () => {
    await requireServices('postgres');
    await migrateAsOwner(config); // the vault role does not migrate
    vault = await openVault(config);
  });
  after(async () => {
    await vault.close();
    await appRole.end();
    await ownerRole.end();
    await vaultRole.end();
  });

  it('stores originals encrypted, returns them only through an audited detokenize', async () => {
    const token = `tok_pan_1_${uniqueId('t')}`;
    const original = '4242424242424242';
    assert.equal(await vault.store([{ token, kind: 'pan', original }]), 1);
    assert.equal(await vault.store([{ token, kind: 'pan', original }]), 0, 'storing a token twice is a no-op');
    const raw = await vaultRole.query<{ ciphertext: Buffer }>('select ciphertext from vault.tokens where token = $1', [
      token,
    ]);
    assert.ok(!raw.rows[0]!.ciphertext.toString('latin1').includes(original), 'the original is not stored in clear');
    assert.equal(await vault.detokenize(token, { actor: 'risk@paylink', purpose: 'chargeback evidence' }), original);
    assert.equal(await vault.detokenize(`${token}x`, { actor: 'risk@paylink', purpose: 'typo' }), undefined);
    // The vault role appends to the audit trail but cannot read it; its owner (an auditor) does.
    const audit = await ownerRole.query<{ actor: string; purpose: string; found: boolean }>(
      'select actor, purpose, found from vault.detokenization_audit where token like $1 order by audit_id',
      [`${token}%`],
    );
    assert.deepEqual(audit.rows, [
      { actor: 'risk@paylink', purpose: 'chargeback evidence', found: true },
      { actor: 'risk@paylink', purpose: 'typo', found: false },
    ]);
    await assert.rejects(vault.detokenize(token, { actor: ' ', purpose: 'x' }), /actor and a purpose/);
  });

  it('the application role cannot read the vault, and the audit trail is append-only', async () => {
    await assert.rejects(appRole.query('select count(*) from vault.tokens'), /permission denied for schema vault/);
    // The vault role may not delete at all (test/integration/vault-roles.test.ts); the trigger stops even the owner.
    await assert.rejects(vaultRole.query('delete from vault.detokenization_audit'), /permission denied for table/);
    await assert.rejects(ownerRole.query('delete from vault.detokenization_audit'), /append-only/);
  });

  it('openVault says what is missing when its role may not run the vault statements (no lazy migration)', async () => {
    // The application role stands in for a vault role on a database `npm run migrate` has not set up.
    await assert.rejects(
      openVault({ ...config, VAULT_DATABASE_URL: config.DATABASE_URL }),
      /^Error: the vault is not ready for role \S+: missing USAGE on schema vault; .*Run `npm run migrate`/,
    );
  });

  it('the vault journal keeps entries while Postgres is unreachable and says a pending token is pending', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paylink-vault-journal-'));
    const spool = await openSpool({ dir, maxBytes: 1024 * 1024 });
    // A closed port: every vault query fails as during a Postgres outage.
    const unreachable = openVaultLazily({ ...config, VAULT_DATABASE_URL: 'postgres://x:y@127.0.0.1:1/paylink' });
    const log = createLogger('test-vault-journal');
    const journal = createVaultJournal({ spool, keyring: vaultKeyring(config), vault: unreachable, log });
    const token = `tok_email_1_${uniqueId('j')}`;
    try {
      await journal.append([{ token, kind: 'email', original: 'jane.doe@example.com' }]);
      assert.equal(journal.status().records, 1);
      await assert.rejects(journal.drain(), /ECONNREFUSED|connect/);
      assert.match(journal.status().drainError ?? '', /ECONNREFUSED|connect/);
      const edgeVault = journaledVault(journal, unreachable);
      await assert.rejects(
        edgeVault.detokenize(token, { actor: 'risk@paylink', purpose: 'chargeback evidence' }),
        (err: unknown) => err instanceof VaultEntryPendingError && err.certain && /vault journal/.test(err.message),
      );

      // Postgres back: the same journal drains into the real vault, decryptable with the vault's keys.
      const reachable = createVaultJournal({ spool, keyring: vaultKeyring(config), vault, log });
      assert.equal(await reachable.drain(), 1);
      assert.equal(reachable.status().records, 0);
      assert.equal(reachable.status().drainError, undefined);
      assert.equal(
        await vault.detokenize(token, { actor: 'risk@paylink', purpose: 'verify drain' }),
        'jane.doe@example.com',
      );
    } finally {
      await spool.close();
      await unreachable.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
