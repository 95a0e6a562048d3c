-- docker-compose only: what `npm run stack -- up` provisions on its own cluster (src/stack/postgres-service.ts).
-- POSTGRES_USER paylink owns the database and every schema (vault included) and runs migrations
-- (`npm run migrate`, or `npm run stack -- up`, creates schema vault); the pipeline connects as
-- paylink_app, the vault code as paylink_vault: both own nothing.
-- A volume initialised before the owner took the vault over: `reassign owned by paylink_vault to paylink`.
create role paylink_app login password 'paylink_app';
create role paylink_vault login password 'paylink_vault';
create database paylink_oltp owner paylink;
