import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import type { DqCheckName, DqMeasurement, DqResult, DqWindow } from '../contracts/data-quality';
import type { PaymentEvent } from '../contracts/payment-event';
import { postingKey } from '../ledger/posting-rules';
import { scanValue } from '../quality/pii-scanner';
import { lastPublishedWindow } from './finance-ledger';
import { assertSchemaName } from './oltp';
import { likePrefix } from './postgres';
import type { SnowflakeQueries } from './snowflake';

// Every statement of the data-quality checks (docs/data-quality.md, migration 009): what each check
// measures in Postgres and Snowflake, and the result rows. Thresholds are judged in contracts/data-quality.ts.

/**
 * What a delivery says about money (type, payment, merchant, currency, amounts, ids), not how it came:
 * source, sequence, region, event time, trace id and schema version differ between a retry and its original.
 */
export function contentHash(fact: PaymentEvent): string {
  const {
    traceId: _traceId,
    source: _source,
    sourceSequence: _sourceSequence,
    region: _region,
    occurredAt: _occurredAt,
    version: _version,
    ...content
  } = fact;
  const canonical = JSON.stringify(content, Object.keys(content).sort());
  return createHash('sha256').update(canonical).digest('hex');
}

/** Counts every delivery of a fact by its content (the inbox keeps only the first): called with the inbox admission. */
export async function recordDeliveries(pool: Pool, facts: PaymentEvent[]): Promise<void> {
  if (facts.length === 0) return;
  const byKey = new Map<string, { fact: PaymentEvent; hash: string; n: number }>();
  for (const fact of facts) {
    const hash = contentHash(fact);
    const k = `${fact.idempotencyKey}\n${hash}`;
    const seen = byKey.get(k);
    if (seen) seen.n += 1;
    else byKey.set(k, { fact, hash, n: 1 });
  }
  const rows = [...byKey.values()];
  await pool.query(
    `insert into quality.fact_deliveries (idempotency_key, content_hash, payment_id, source, deliveries)
     select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
     on conflict (idempotency_key, content_hash)
     do update set deliveries = quality.fact_deliveries.deliveries + excluded.deliveries, last_seen = now()`,
    [
      rows.map((r) => r.fact.idempotencyKey),
      rows.map((r) => r.hash),
      rows.map((r) => r.fact.paymentId),
      rows.map((r) => r.fact.source),
      rows.map((r) => r.n),
    ],
  );
}

export interface MeasureScope {
  window: DqWindow;
  /** Payment-id prefix ('' = everything). */
  scope: string;
}

const MONEY_MOVING = ['captured', 'settled', 'refunded', 'chargeback_opened', 'chargeback_won', 'chargeback_lost'];

/** A fact's precondition: the fact type that must be there before it can apply (payment-state.ts). */
const PRECONDITION: [string, string][] = [
  ['voided', 'authorized'],
  ['settled', 'captured'],
  ['refunded', 'captured'],
  ['chargeback_opened', 'captured'],
  ['chargeback_won', 'chargeback_opened'],
  ['chargeback_lost', 'chargeback_opened'],
];

// Rates to 4 places and skews to whole ms: a long float's digits read as a card number to the PII scanner.
const rate = (part: number, whole: number): number => (whole === 0 ? 0 : Math.round((part / whole) * 10_000) / 10_000);

export async function measureRepeatRate(pool: Pool, s: MeasureScope): Promise<DqMeasurement> {
  const r = await pool.query<{ source: string; deliveries: string; keys: string }>(
    `select source, sum(deliveries)::text as deliveries, count(distinct idempotency_key)::text as keys
       from quality.fact_deliveries
      where last_seen >= $1 and first_seen < $2 and payment_id like $3
      group by source order by source`,
    [s.window.start, s.window.end, likePrefix(s.scope)],
  );
  const perSource: Record<string, number> = {};
  const bySource: Record<string, { deliveries: number; keys: number; repeated: number }> = {};
  for (const row of r.rows) {
    const deliveries = Number(row.deliveries);
    const keys = Number(row.keys);
    bySource[row.source] = { deliveries, keys, repeated: deliveries - keys };
    perSource[row.source] = rate(deliveries - keys, deliveries);
  }
  const worst = Math.max(0, ...Object.values(perSource));
  return {
    check: 'duplicates.repeat_rate',
    measured: worst,
    perSource,
    summary: `highest repeated-delivery rate ${(worst * 100).toFixed(1)}% over ${r.rows.length} sources`,
    details: { bySource },
  };
}

export async function measureConflictingDuplicates(pool: Pool, s: MeasureScope): Promise<DqMeasurement> {
  const sameKey = await pool.query<{ idempotency_key: string; payment_id: string; contents: number }>(
    `select idempotency_key, min(payment_id) as payment_id, count(*)::int as contents
       from quality.fact_deliveries
      where last_seen >= $1 and first_seen < $2 and payment_id like $3
      group by idempotency_key having count(*) > 1 order by idempotency_key`,
    [s.window.start, s.window.end, likePrefix(s.scope)],
  );
  // The same fact by two paths (other keys) must carry the same money: the inbox has both bodies.
  const sameFact = await pool.query<{ payment_id: string; fact_key: string; keys: string[] }>(
    `select payment_id, fact_key, array_agg(idempotency_key order by idempotency_key) as keys
       from payments.facts
      where received_at >= $1 and received_at < $2 and payment_id like $3
      group by payment_id, fact_key
     having count(distinct (body->>'currency', body->>'amountMinor', body->>'platformFeeMinor', body->>'feeMinor')) > 1
      order by payment_id, fact_key`,
    [s.window.start, s.window.end, likePrefix(s.scope)],
  );
  const n = sameKey.rows.length + sameFact.rows.length;
  return {
    check: 'duplicates.conflicting',
    measured: n,
    summary:
      n === 0
        ? 'no idempotency key or fact delivered with different content'
        : `${sameKey.rows.length} idempotency keys delivered with different content, ${sameFact.rows.length} facts with different amounts by different paths`,
    details: {
      ...concernedPayments([...sameKey.rows, ...sameFact.rows].map((r) => r.payment_id)),
      sameKeyOtherContent: sameKey.rows.slice(0, 100).map((r) => ({
        idempotencyKey: r.idempotency_key,
        paymentId: r.payment_id,
        contents: r.contents,
      })),
      sameFactOtherAmount: sameFact.rows.slice(0, 100).map((r) => ({
        paymentId: r.payment_id,
        factKey: r.fact_key,
        idempotencyKeys: r.keys,
      })),
    },
  };
}

export async function measureMissingPostings(pool: Pool, s: MeasureScope, slaMs: number): Promise<DqMeasurement> {
  const r = await pool.query<{
    idempotency_key: string;
    payment_id: string;
    fact_key: string;
    fact_type: string;
    currency: string;
    amount_minor: string | null;
    anomaly: boolean;
  }>(
    `select f.idempotency_key, f.payment_id, f.fact_key, f.fact_type, f.body->>'currency' as currency,
            f.body->>'amountMinor' as amount_minor,
            exists (select 1 from ledger.payment_flags p where p.payment_id = f.payment_id and p.kind = 'anomaly') as anomaly
       from payments.facts f
      where f.received_at >= $1 and f.received_at < $2 and f.payment_id like $3
        and f.fact_type = any($4) and f.received_at < now() - $5 * interval '1 millisecond'
        and not exists (select 1 from ledger.journal_entries e
                         where e.posting_key = 'payment/' || f.payment_id || '/' || f.fact_key)
      order by f.received_at, f.idempotency_key`,
    [s.window.start, s.window.end, likePrefix(s.scope), MONEY_MOVING, slaMs],
  );
  // A fact the state machine refused is flagged as an anomaly on its payment: explained, not missing.
  const missing = r.rows.filter((x) => !x.anomaly);
  const explained = r.rows.filter((x) => x.anomaly);
  const byCurrency: Record<string, { facts: number; amountMinor: string }> = {};
  for (const x of missing) {
    const c = (byCurrency[x.currency] ??= { facts: 0, amountMinor: '0' });
    c.facts += 1;
    c.amountMinor = (BigInt(c.amountMinor) + BigInt(x.amount_minor ?? '0')).toString();
  }
  return {
    check: 'ledger.missing_postings',
    measured: missing.length,
    summary:
      missing.length === 0
        ? `every money-moving fact older than ${slaMs} ms has its postings`
        : `${missing.length} money-moving facts without postings after ${slaMs} ms: ${missing
            .slice(0, 5)
            .map((x) => postingKey(x.payment_id, x.fact_key))
            .join(', ')}${missing.length > 5 ? ', …' : ''}`,
    details: {
      ...concernedPayments(missing.map((x) => x.payment_id)),
      slaMs,
      byCurrency,
      missing: missing
        .slice(0, 100)
        .map((x) => ({ idempotencyKey: x.idempotency_key, postingKey: postingKey(x.payment_id, x.fact_key) })),
      explainedByAnomaly: explained.length,
    },
  };
}

interface CurrencyTotals {
  lines: number;
  debitMinor: bigint;
  creditMinor: bigint;
}

function addTotals(
  m: Map<string, CurrencyTotals>,
  currency: string,
  lines: number,
  debit: bigint,
  credit: bigint,
): void {
  const t = m.get(currency) ?? { lines: 0, debitMinor: 0n, creditMinor: 0n };
  m.set(currency, { lines: t.lines + lines, debitMinor: t.debitMinor + debit, creditMinor: t.creditMinor + credit });
}

const IN_CHUNK = 500;

/** Most payments a failing result lists for the finance gate; past it the result concerns every window. */
const CONCERNED_PAYMENTS_MAX = 10_000;

/**
 * The payments a failing money check is about, in its details: the finance gate holds only the windows
 * with entries of these payments (src/activities/finance-load.ts). Truncated lists hold every window.
 */
function concernedPayments(ids: string[]): { paymentIds: string[]; paymentIdsTruncated?: true } {
  const distinct = [...new Set(ids)].sort();
  return distinct.length > CONCERNED_PAYMENTS_MAX
    ? { paymentIds: distinct.slice(0, CONCERNED_PAYMENTS_MAX), paymentIdsTruncated: true }
    : { paymentIds: distinct };
}

/** Journal entries posted in the window and inside a published finance window must be in Snowflake, line for line. */
export async function measureSnowflakeCompleteness(
  pool: Pool,
  snowflake: SnowflakeQueries,
  s: MeasureScope,
): Promise<DqMeasurement> {
  const published = await lastPublishedWindow(pool);
  const hi = published?.hi ?? '0';
  const entries = await pool.query<{ entry_id: string; payment_id: string | null }>(
    `select entry_id::text, payment_id from ledger.journal_entries
      where posted_at >= $1 and posted_at < $2 and payment_id like $3 and xid < $4::xid8 order by entry_id`,
    [s.window.start, s.window.end, likePrefix(s.scope), hi],
  );
  const pending = await pool.query<{ n: number }>(
    `select count(*)::int as n from ledger.journal_entries
      where posted_at >= $1 and posted_at < $2 and payment_id like $3 and xid >= $4::xid8`,
    [s.window.start, s.window.end, likePrefix(s.scope), hi],
  );
  const ids = entries.rows.map((r) => r.entry_id);
  const ledger = new Map<string, CurrencyTotals>();
  const totals = await pool.query<{ currency: string; lines: number; debit: string; credit: string }>(
    `select currency, count(*)::int as lines,
            sum(case when side = 'debit' then amount_minor else 0 end)::text as debit,
            sum(case when side = 'credit' then amount_minor else 0 end)::text as credit
       from ledger.journal_lines where entry_id = any($1::bigint[]) group by currency`,
    [ids],
  );
  for (const t of totals.rows) addTotals(ledger, t.currency, t.lines, BigInt(t.debit), BigInt(t.credit));
  const warehouse = new Map<string, CurrencyTotals>();
  const inWarehouse = new Set<string>();
  for (let i = 0; i < ids.length; i += IN_CHUNK) {
    const chunk = ids.slice(i, i + IN_CHUNK);
    const marks = chunk.map(() => '?').join(', ');
    const found = await snowflake.query<{ ENTRY_ID: number | string }>(
      `SELECT DISTINCT ENTRY_ID FROM FINANCE.JOURNAL_ENTRIES WHERE ENTRY_ID IN (${marks})`,
      chunk,
    );
    for (const f of found) inWarehouse.add(String(f.ENTRY_ID));
    // Distinct lines: a duplicated row is the verifier's finding, not a completeness one.
    const rows = await snowflake.query<{
      CURRENCY: string;
      LINES: number | string;
      DEBIT: number | string | null;
      CREDIT: number | string | null;
    }>(
      `SELECT CURRENCY, COUNT(*) AS LINES,
              SUM(CASE WHEN SIDE = 'debit' THEN AMOUNT_MINOR ELSE 0 END) AS DEBIT,
              SUM(CASE WHEN SIDE = 'credit' THEN AMOUNT_MINOR ELSE 0 END) AS CREDIT
         FROM (SELECT DISTINCT LINE_ID, CURRENCY, SIDE, AMOUNT_MINOR FROM FINANCE.JOURNAL_LINES WHERE ENTRY_ID IN (${marks}))
        GROUP BY CURRENCY`,
      chunk,
    );
    for (const r of rows)
      addTotals(warehouse, r.CURRENCY, Number(r.LINES), BigInt(String(r.DEBIT ?? 0)), BigInt(String(r.CREDIT ?? 0)));
  }
  const missing = ids.filter((id) => !inWarehouse.has(id));
  const paymentOf = new Map(entries.rows.map((r) => [r.entry_id, r.payment_id ?? '']));
  const differences: string[] = [];
  for (const c of [...new Set([...ledger.keys(), ...warehouse.keys()])].sort()) {
    const l = ledger.get(c) ?? { lines: 0, debitMinor: 0n, creditMinor: 0n };
    const w = warehouse.get(c) ?? { lines: 0, debitMinor: 0n, creditMinor: 0n };
    if (l.lines !== w.lines || l.debitMinor !== w.debitMinor || l.creditMinor !== w.creditMinor) {
      differences.push(
        `${c}: ledger ${l.lines} lines ${l.debitMinor}/${l.creditMinor}, Snowflake ${w.lines} lines ${w.debitMinor}/${w.creditMinor}`,
      );
    }
  }
  const measured = missing.length + differences.length;
  const perCurrency = (m: Map<string, CurrencyTotals>) =>
    Object.fromEntries(
      [...m].map(([c, t]) => [
        c,
        { lines: t.lines, debitMinor: t.debitMinor.toString(), creditMinor: t.creditMinor.toString() },
      ]),
    );
  return {
    check: 'ledger.snowflake_completeness',
    measured,
    summary:
      measured === 0
        ? `${ids.length} published entries all in Snowflake, totals equal per currency (${pending.rows[0]?.n ?? 0} not yet published)`
        : `${missing.length} published entries missing in Snowflake${missing.length ? ` (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''})` : ''}; ${differences.join('; ')}`,
    details: {
      // A finance window holds entries of these payments: the ones whose published rows are missing. Totals
      // that differ with every entry present are the verifier's finding (`finance verify` names the row).
      ...concernedPayments(missing.map((id) => paymentOf.get(id) ?? '')),
      publishedBelowXid: hi,
      entries: ids.length,
      notYetPublished: pending.rows[0]?.n ?? 0,
      missingEntryIds: missing.slice(0, 100),
      differences,
      ledger: perCurrency(ledger),
      snowflake: perCurrency(warehouse),
    },
  };
}

/**
 * Every legacy OLTP ledger row (`<schema>.ledger_entries`, written by PayLink's payments API) older than
 * the SLA has its counterpart: the journal entry of the same fact (entry_ref `<payment>/<fact key>/<side>`
 * ↔ posting key `payment/<payment>/<fact key>`) in the same currency, whose debits equal the row's amount.
 */
export async function measureOltpCounterparts(
  oltp: Pool,
  pool: Pool,
  s: MeasureScope,
  oltpSchema: string,
  slaMs: number,
): Promise<DqMeasurement> {
  const schema = assertSchemaName(oltpSchema);
  let rows: { id: string; entry_ref: string; amount_minor: string; currency: string }[];
  try {
    rows = (
      await oltp.query<{ id: string; entry_ref: string; amount_minor: string; currency: string }>(
        `select id::text, entry_ref, amount_minor::text, currency from ${schema}.ledger_entries
          where created_at >= $1 and created_at < $2 and payment_id like $3
            and created_at < now() - $4 * interval '1 millisecond'
          order by id`,
        [s.window.start, s.window.end, likePrefix(s.scope), slaMs],
      )
    ).rows;
  } catch (err) {
    // No payments API has written here yet: no legacy rows, nothing to match.
    if ((err as { code?: string }).code !== '42P01') throw err;
    rows = [];
  }
  const keyOf = (ref: string): string => `payment/${ref.replace(/\/(debit|credit)$/, '')}`;
  const counterparts = await pool.query<{ posting_key: string; currency: string; debit: string }>(
    `select e.posting_key, l.currency, sum(l.amount_minor) filter (where l.side = 'debit')::text as debit
       from ledger.journal_entries e join ledger.journal_lines l using (entry_id)
      where e.posting_key = any($1) group by 1, 2`,
    [[...new Set(rows.map((r) => keyOf(r.entry_ref)))]],
  );
  const found = new Map(counterparts.rows.map((c) => [`${c.posting_key}|${c.currency}`, c.debit]));
  const unmatched = rows.filter((r) => found.get(`${keyOf(r.entry_ref)}|${r.currency}`) !== r.amount_minor);
  return {
    check: 'ledger.oltp_counterpart',
    measured: unmatched.length,
    summary:
      unmatched.length === 0
        ? `${rows.length} legacy OLTP ledger rows all have their journal entry`
        : `${unmatched.length} of ${rows.length} legacy OLTP ledger rows without a matching journal entry: ${unmatched
            .slice(0, 5)
            .map((r) => r.entry_ref)
            .join(', ')}${unmatched.length > 5 ? ', …' : ''}`,
    details: {
      oltpSchema: schema,
      slaMs,
      rows: rows.length,
      unmatched: unmatched
        .slice(0, 100)
        .map((r) => ({ id: r.id, entryRef: r.entry_ref, amountMinor: r.amount_minor, currency: r.currency })),
    },
  };
}

export async function measureBeforePrecondition(pool: Pool, s: MeasureScope): Promise<DqMeasurement> {
  const r = await pool.query<{ source: string; n: number; early: number }>(
    `with pre(fact_type, needs) as (select * from unnest($4::text[], $5::text[]))
     select f.body->>'source' as source, count(*)::int as n,
            count(*) filter (where not exists (
              select 1 from payments.facts p
               where p.payment_id = f.payment_id and p.fact_type = pre.needs and p.received_at <= f.received_at))::int as early
       from payments.facts f join pre on pre.fact_type = f.fact_type
      where f.received_at >= $1 and f.received_at < $2 and f.payment_id like $3
      group by 1 order by 1`,
    [s.window.start, s.window.end, likePrefix(s.scope), PRECONDITION.map((p) => p[0]), PRECONDITION.map((p) => p[1])],
  );
  const perSource = Object.fromEntries(r.rows.map((x) => [x.source, rate(x.early, x.n)]));
  const worst = Math.max(0, ...Object.values(perSource));
  return {
    check: 'ordering.before_precondition',
    measured: worst,
    perSource,
    summary: `highest share of facts ahead of their precondition ${(worst * 100).toFixed(1)}%`,
    details: {
      bySource: Object.fromEntries(r.rows.map((x) => [x.source, { facts: x.n, beforePrecondition: x.early }])),
    },
  };
}

/** Event time vs ingest time: late facts (received more than lateAfterMs after they occurred) and facts from the future. */
export async function measureLateness(
  pool: Pool,
  s: MeasureScope,
  lateAfterMs: number,
  futureSkewMs: number,
): Promise<DqMeasurement> {
  const r = await pool.query<{
    source: string;
    n: number;
    late: number;
    future: number;
    p50_ms: number;
    p99_ms: number;
    max_ms: number;
  }>(
    `select body->>'source' as source, count(*)::int as n,
            count(*) filter (where received_at - occurred_at > $4 * interval '1 millisecond')::int as late,
            count(*) filter (where occurred_at - received_at > $5 * interval '1 millisecond')::int as future,
            round(percentile_cont(0.5) within group (order by extract(epoch from received_at - occurred_at)) * 1000)::float8 as p50_ms,
            round(percentile_cont(0.99) within group (order by extract(epoch from received_at - occurred_at)) * 1000)::float8 as p99_ms,
            round(max(extract(epoch from received_at - occurred_at)) * 1000)::float8 as max_ms
       from payments.facts
      where received_at >= $1 and received_at < $2 and payment_id like $3
      group by 1 order by 1`,
    [s.window.start, s.window.end, likePrefix(s.scope), lateAfterMs, futureSkewMs],
  );
  const late = r.rows.reduce((n, x) => n + x.late, 0);
  const future = r.rows.reduce((n, x) => n + x.future, 0);
  const examples = await pool.query<{ idempotency_key: string }>(
    `select idempotency_key from payments.facts
      where received_at >= $1 and received_at < $2 and payment_id like $3
        and (received_at - occurred_at > $4 * interval '1 millisecond' or occurred_at - received_at > $5 * interval '1 millisecond')
      order by received_at limit 10`,
    [s.window.start, s.window.end, likePrefix(s.scope), lateAfterMs, futureSkewMs],
  );
  return {
    check: 'ordering.lateness',
    measured: late + future,
    summary: `${late} facts later than ${lateAfterMs} ms, ${future} from more than ${futureSkewMs} ms in the future`,
    details: {
      lateAfterMs,
      futureSkewMs,
      bySource: Object.fromEntries(
        r.rows.map((x) => [
          x.source,
          { facts: x.n, late: x.late, future: x.future, skewP50Ms: x.p50_ms, skewP99Ms: x.p99_ms, skewMaxMs: x.max_ms },
        ]),
      ),
      examples: examples.rows.map((x) => x.idempotency_key),
    },
  };
}

/** The drift consumer's records seen in the window (the whole pipeline: drift has no payment id). */
export async function measureSchemaDrift(pool: Pool, s: MeasureScope): Promise<DqMeasurement> {
  const r = await pool.query<{ source: string; schema: string; kind: string; field_path: string; count: string }>(
    `select source, schema_name || '@' || schema_version as schema, kind, field_path, count::text
       from quality.schema_drift where last_seen >= $1 and first_seen < $2
      order by count desc, source, schema, kind, field_path limit 100`,
    [s.window.start, s.window.end],
  );
  return {
    check: 'schema.drift',
    measured: r.rows.length,
    summary:
      r.rows.length === 0 ? 'no schema drift seen' : `${r.rows.length} drift records (npm run quality -- report)`,
    details: { records: r.rows.map((x) => ({ ...x, count: Number(x.count) })) },
  };
}

/**
 * The PII scanner over a cheap sample: the window's inbox bodies and manual entry memos (newest
 * `sampleSize` of each). The full scan of every store stays `npm run pii-scan`.
 */
export async function measureTokenization(pool: Pool, s: MeasureScope, sampleSize: number): Promise<DqMeasurement> {
  const facts = await pool.query<{ idempotency_key: string; body: unknown }>(
    `select idempotency_key, body from payments.facts
      where received_at >= $1 and received_at < $2 and payment_id like $3 order by received_at desc limit $4`,
    [s.window.start, s.window.end, likePrefix(s.scope), sampleSize],
  );
  const memos = await pool.query<{ entry_id: string; memo: string }>(
    `select entry_id::text, memo from ledger.journal_entries
      where posted_at >= $1 and posted_at < $2 and payment_id like $3 and memo is not null order by posted_at desc limit $4`,
    [s.window.start, s.window.end, likePrefix(s.scope), sampleSize],
  );
  const hits: { where: string; kind: string }[] = [];
  for (const f of facts.rows)
    for (const h of scanValue(f.body)) hits.push({ where: `payments.facts ${f.idempotency_key}`, kind: h.kind });
  for (const m of memos.rows)
    for (const h of scanValue(m.memo)) hits.push({ where: `ledger.journal_entries ${m.entry_id} memo`, kind: h.kind });
  return {
    check: 'tokenization.pii',
    measured: hits.length,
    summary: `${hits.length} PII hits in a sample of ${facts.rows.length} fact bodies and ${memos.rows.length} memos`,
    details: { sampled: { facts: facts.rows.length, memos: memos.rows.length }, hits: hits.slice(0, 50) },
  };
}

export async function recordDqResults(pool: Pool, results: DqResult[]): Promise<void> {
  if (results.length === 0) return;
  await pool.query(
    `insert into quality.dq_results (run_id, dq_window, window_start, window_end, scope, check_name, severity, money,
       passed, measured, threshold, summary, details, ran_at)
     select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
       $8::boolean[], $9::boolean[], $10::numeric[], $11::numeric[], $12::text[], $13::jsonb[], $14::timestamptz[])
     on conflict (run_id, check_name) do nothing`,
    [
      results.map((r) => r.runId),
      results.map((r) => r.window.id),
      results.map((r) => r.window.start),
      results.map((r) => r.window.end),
      results.map((r) => r.scope),
      results.map((r) => r.check),
      results.map((r) => r.severity),
      results.map((r) => r.money),
      results.map((r) => r.passed),
      results.map((r) => r.measured),
      results.map((r) => r.threshold),
      results.map((r) => r.summary),
      results.map((r) => JSON.stringify({ ...r.details, ...(r.perSource ? { perSource: r.perSource } : {}) })),
      results.map((r) => r.ranAt),
    ],
  );
}

/** The same rows in Snowflake's QUALITY.DQ_RESULTS; a retry of the run adds nothing (by run id and check). */
export async function recordDqResultsInWarehouse(snowflake: SnowflakeQueries, results: DqResult[]): Promise<void> {
  if (results.length === 0) return;
  const existing = await snowflake.query<{ CHECK_NAME: string }>(
    'SELECT CHECK_NAME FROM QUALITY.DQ_RESULTS WHERE RUN_ID = ?',
    [results[0]!.runId],
  );
  const have = new Set(existing.map((r) => r.CHECK_NAME));
  const rows = results.filter((r) => !have.has(r.check));
  if (rows.length === 0) return;
  const tuple = `(${Array.from({ length: 14 }, () => '?').join(', ')})`;
  await snowflake.query(
    `INSERT INTO QUALITY.DQ_RESULTS (RUN_ID, DQ_WINDOW, WINDOW_START, WINDOW_END, SCOPE, CHECK_NAME, SEVERITY, MONEY, PASSED,
       MEASURED, THRESHOLD, SUMMARY, DETAILS, RAN_AT) VALUES ${rows.map(() => tuple).join(', ')}`,
    rows.flatMap((r) => [
      r.runId,
      r.window.id,
      r.window.start.replace('Z', ''),
      r.window.end.replace('Z', ''),
      r.scope,
      r.check,
      r.severity,
      r.money,
      r.passed,
      r.measured,
      r.threshold,
      r.summary,
      JSON.stringify(r.details),
      r.ranAt.replace('Z', ''),
    ]),
  );
}

interface ResultRow {
  run_id: string;
  dq_window: string;
  window_start: Date;
  window_end: Date;
  scope: string;
  check_name: DqCheckName;
  severity: DqResult['severity'];
  money: boolean;
  passed: boolean;
  measured: string;
  threshold: string;
  summary: string;
  details: Record<string, unknown>;
  ran_at: Date;
}

const resultOf = (r: ResultRow): DqResult => ({
  runId: r.run_id,
  window: { id: r.dq_window, start: r.window_start.toISOString(), end: r.window_end.toISOString() },
  scope: r.scope,
  check: r.check_name,
  severity: r.severity,
  money: r.money,
  passed: r.passed,
  measured: Number(r.measured),
  threshold: Number(r.threshold),
  summary: r.summary,
  details: r.details,
  ranAt: r.ran_at.toISOString(),
});

/** The latest result per check and window (monitoring; the finance gate): of these windows, or of all. */
export async function latestDqResults(pool: Pool, scope = '', windows?: string[]): Promise<DqResult[]> {
  const r = await pool.query<ResultRow>(
    `select distinct on (dq_window, check_name) *
       from quality.dq_results
      where scope = $1 and ($2::text[] is null or dq_window = any($2))
      order by dq_window, check_name, ran_at desc, result_id desc`,
    [scope, windows ?? null],
  );
  return r.rows.map(resultOf);
}

/** The payments with entries in a finance window: whose failing money checks hold it. */
export async function paymentsOfFinanceWindow(pool: Pool, w: { lo: string; hi: string }): Promise<string[]> {
  const r = await pool.query<{ payment_id: string }>(
    `select distinct payment_id from ledger.journal_entries
      where xid >= $1::xid8 and xid < $2::xid8 and payment_id is not null`,
    [w.lo, w.hi],
  );
  return r.rows.map((x) => x.payment_id);
}

/** When the entries of a finance window were posted: which DQ windows gate it. */
export async function postedRangeOfFinanceWindow(
  pool: Pool,
  w: { lo: string; hi: string },
): Promise<{ from: Date; to: Date } | undefined> {
  const r = await pool.query<{ from: Date | null; to: Date | null }>(
    `select min(posted_at) as "from", max(posted_at) as "to" from ledger.journal_entries where xid >= $1::xid8 and xid < $2::xid8`,
    [w.lo, w.hi],
  );
  const row = r.rows[0];
  return row?.from && row.to ? { from: row.from, to: row.to } : undefined;
}
