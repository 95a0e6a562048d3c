-- The vault role owns nothing. The migration role (MIGRATION_DATABASE_URL) owns schema vault and its
-- objects and runs these migrations; paylink_vault (or a login role that is a member of it) gets
-- exactly the statements src/stores/vault.ts runs (the edge's journal drainer goes through it too):
--   insert into vault.tokens … on conflict (token) do nothing     (store, storeEncrypted)
--   select … from vault.tokens where token = $1                     (detokenize)
--   insert into vault.detokenization_audit …                        (detokenize; bigserial: the sequence)
-- Only an owner may ALTER, DISABLE TRIGGER, DROP or TRUNCATE, so a leaked vault credential cannot
-- switch off the audit trail's append-only trigger, and without UPDATE/DELETE it cannot rewrite
-- tokens or audit rows either. Reading the audit trail is the owner's (an auditor's) business.
-- (001 says the vault role owns the schema: that was so until this migration; 001 is left as applied.)
do $$
begin
  if not exists (select from pg_roles where rolname = 'paylink_vault') then
    raise exception 'role paylink_vault does not exist: create it before migrating (docs/architecture.md, "Database roles")'
      using errcode = '42704';
  end if;
  -- A superuser owner passes the runner's ownership check; the vault role must still own nothing here.
  if exists (select from pg_namespace where nspname = 'vault' and nspowner = 'paylink_vault'::regrole)
     or exists (select from pg_class where relnamespace = 'vault'::regnamespace and relowner = 'paylink_vault'::regrole)
     or exists (select from pg_proc where pronamespace = 'vault'::regnamespace and proowner = 'paylink_vault'::regrole) then
    raise exception 'paylink_vault still owns schema vault or objects in it: as a superuser (RDS: the master user) run "reassign owned by paylink_vault to %" in this database first', current_user
      using errcode = '42501';
  end if;
end $$;

-- Start from nothing, whatever was granted before, then grant exactly what the code runs.
revoke all on schema vault from public, paylink_vault;
revoke all on all tables in schema vault from public, paylink_vault;
revoke all on all sequences in schema vault from public, paylink_vault;
revoke all on all functions in schema vault from public, paylink_vault;

grant usage on schema vault to paylink_vault;
grant select, insert on vault.tokens to paylink_vault;
grant insert on vault.detokenization_audit to paylink_vault;
grant usage on sequence vault.detokenization_audit_audit_id_seq to paylink_vault;
