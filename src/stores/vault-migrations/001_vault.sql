-- The token vault: originals of tokenized PAN/PII, encrypted (AES-256-GCM, versioned keys), in its
-- own schema owned by its own role. Detokenization is an explicit, audited call.
create table vault.tokens (
  token       text primary key,
  kind        text not null,
  key_version int not null,
  iv          bytea not null,
  ciphertext  bytea not null,
  auth_tag    bytea not null,
  created_at  timestamptz not null default now()
);

create table vault.detokenization_audit (
  audit_id   bigserial primary key,
  token      text not null,
  actor      text not null,
  purpose    text not null,
  found      boolean not null,
  at         timestamptz not null default now()
);

create function vault.reject_mutation() returns trigger language plpgsql as $$
begin
  raise exception 'vault.% is append-only: % rejected', tg_table_name, tg_op using errcode = '42501';
end $$;
create trigger detokenization_audit_append_only before update or delete on vault.detokenization_audit
  for each row execute function vault.reject_mutation();
