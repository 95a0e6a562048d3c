-- docker-compose only: what `npm run stack -- up` provisions on its own cluster (src/stack/postgres-service.ts).
create role paylink_vault login password 'paylink_vault';
create schema if not exists vault authorization paylink_vault;
revoke all on schema vault from public;
