import type { Pool } from 'pg';
import type { LifecycleStatus } from '../workflows/payment-state';

// The SLA sweep's query: payments whose coarse stage (from the inbox) is older than its SLA and
// not flagged for that stage yet. The payment workflow has the final word on whether it is stuck.

export interface OverduePayment {
  paymentId: string;
  stage: LifecycleStatus;
  since: string;
}

export interface SlaActivities {
  findOverduePayments(slas: Partial<Record<LifecycleStatus, number>>, limit: number): Promise<OverduePayment[]>;
}

export function createSlaActivities(pool: Pool): SlaActivities {
  return {
    async findOverduePayments(slas, limit) {
      const stages = Object.keys(slas);
      const ms = stages.map((s) => slas[s as LifecycleStatus] ?? 0);
      const rows = await pool.query<{ payment_id: string; stage: LifecycleStatus; since: Date }>(
        `with f as (
           select payment_id,
                  bool_or(fact_type in ('failed', 'voided')) as ended,
                  count(distinct fact_key) filter (where fact_type = 'captured') as captures,
                  count(distinct body->>'captureId') filter (where fact_type = 'settled') as settled_captures,
                  count(distinct fact_key) filter (where fact_type = 'chargeback_opened') as cb_opened,
                  count(distinct fact_key) filter (where fact_type in ('chargeback_won', 'chargeback_lost')) as cb_resolved,
                  bool_or(fact_type = 'authorized') as authorized,
                  max(received_at) as since
             from payments.facts where signalled_at is not null
            group by payment_id),
         s as (
           select payment_id, since,
                  case when ended then null
                       when cb_opened > cb_resolved then 'DISPUTED'
                       when captures > settled_captures then 'CAPTURED'
                       when captures > 0 then null
                       when authorized then 'AUTHORIZED'
                       else 'CREATED' end as stage
             from f)
         select s.payment_id, s.stage, s.since
           from s join unnest($1::text[], $2::int8[]) as sla(stage, ms) on sla.stage = s.stage
          where s.since < now() - sla.ms * interval '1 millisecond'
            and not exists (select 1 from ledger.payment_flags fl
                             where fl.payment_id = s.payment_id
                               and fl.flag_key in ('stuck:' || s.stage, 'resolved:stuck:' || s.stage))
          order by s.since
          limit $3`,
        [stages, ms, limit],
      );
      return rows.rows.map((r) => ({ paymentId: r.payment_id, stage: r.stage, since: r.since.toISOString() }));
    },
  };
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "CAPTURED=3d,AUTHORIZED=7d" into milliseconds per stage; names the bad part on error. */
export function parseSlas(spec: string): Partial<Record<LifecycleStatus, number>> {
  const out: Partial<Record<LifecycleStatus, number>> = {};
  for (const part of spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(CREATED|AUTHORIZED|CAPTURED|DISPUTED)=(\d+)([smhd])$/.exec(part);
    if (!m)
      throw new Error(
        `invalid SLA "${part}" in PAYMENT_SLAS: expected STAGE=<number><s|m|h|d>, stages CREATED, AUTHORIZED, CAPTURED, DISPUTED`,
      );
    out[m[1] as LifecycleStatus] = Number(m[2]) * UNIT_MS[m[3]!]!;
  }
  return out;
}
