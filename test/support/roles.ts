import type { Pool } from 'pg';

/** Who a pool connects as, whether that role has any special attribute, and how many objects it owns. */
export async function roleStanding(pool: Pool): Promise<{ user: string; special: boolean; owned: string }> {
  const { rows } = await pool.query<{ user: string; special: boolean; owned: string }>(
    `select current_user as user,
            (select rolsuper or rolcreaterole or rolcreatedb or rolreplication or rolbypassrls
               from pg_roles where rolname = current_user) as special,
            ((select count(*) from pg_class where pg_has_role(current_user, relowner, 'member'))
           + (select count(*) from pg_namespace where pg_has_role(current_user, nspowner, 'member'))
           + (select count(*) from pg_proc where pg_has_role(current_user, proowner, 'member'))
           + (select count(*) from pg_database where pg_has_role(current_user, datdba, 'member')))::text as owned`,
  );
  return rows[0]!;
}
