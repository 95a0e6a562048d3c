-- Finance tables in Snowflake (docs/finance.md): the ledger's journal, loaded per watermark window,
-- verified against the ledger and sealed. Money is NUMBER(38,0) minor units with its ISO currency.
-- No PRIMARY KEY/UNIQUE: Snowflake does not enforce them (fakesnow does), so idempotency is the
-- loader's MERGE by entry and line id, never a constraint.
CREATE SCHEMA IF NOT EXISTS FINANCE;

-- XID is the ledger transaction id (Postgres xid8) that wrote the entry: its window is lo <= XID < hi.
-- Every row names where it came from: the fact's idempotency key and trace id (the Kafka trace-id
-- header of its raw and fact messages), the fact's source and sequence, and the source topic,
-- partition and offset once the ledger carries them (null until then).
CREATE TABLE IF NOT EXISTS FINANCE.JOURNAL_ENTRIES (
  ENTRY_ID         NUMBER(38,0)  NOT NULL,
  XID              NUMBER(20,0)  NOT NULL,
  POSTING_KEY      VARCHAR       NOT NULL,
  PAYMENT_ID       VARCHAR       NOT NULL,
  MERCHANT_ID      VARCHAR       NOT NULL,
  REGION           VARCHAR,
  FACT_TYPE        VARCHAR       NOT NULL,
  IDEMPOTENCY_KEY  VARCHAR       NOT NULL,
  TRACE_ID         VARCHAR,
  SOURCE           VARCHAR,
  SOURCE_SEQUENCE  NUMBER(38,0),
  SOURCE_TOPIC     VARCHAR,
  SOURCE_PARTITION NUMBER(10,0),
  SOURCE_OFFSET    NUMBER(38,0),
  OCCURRED_AT      TIMESTAMP_NTZ(9) NOT NULL,
  POSTED_AT        TIMESTAMP_NTZ(9) NOT NULL,
  -- SHA-256 of the entry's canonical row (src/ledger/seals.ts) when it was loaded
  ROW_HASH         VARCHAR(64)   NOT NULL,
  LOAD_ID          VARCHAR       NOT NULL,
  LOADED_AT        TIMESTAMP_NTZ(9) NOT NULL
);

CREATE TABLE IF NOT EXISTS FINANCE.JOURNAL_LINES (
  LINE_ID          NUMBER(38,0)  NOT NULL,
  ENTRY_ID         NUMBER(38,0)  NOT NULL,
  XID              NUMBER(20,0)  NOT NULL,
  ACCOUNT_CODE     VARCHAR       NOT NULL,
  MERCHANT_ID      VARCHAR       NOT NULL,
  SIDE             VARCHAR       NOT NULL,
  AMOUNT_MINOR     NUMBER(38,0)  NOT NULL,
  CURRENCY         VARCHAR(3)    NOT NULL,
  -- the entry's posting day (UTC): what DAILY_BALANCES groups by
  BALANCE_DATE     DATE          NOT NULL,
  IDEMPOTENCY_KEY  VARCHAR       NOT NULL,
  LOAD_ID          VARCHAR       NOT NULL,
  LOADED_AT        TIMESTAMP_NTZ(9) NOT NULL
);

-- Staging: a load's rows land here first (deduplicated by id on the way out, since Snowflake's MERGE
-- errors on duplicate source rows) and are deleted in the same transaction.
CREATE TABLE IF NOT EXISTS FINANCE.STAGE_JOURNAL_ENTRIES (
  LOAD_ID          VARCHAR       NOT NULL,
  ENTRY_ID         NUMBER(38,0)  NOT NULL,
  XID              NUMBER(20,0)  NOT NULL,
  POSTING_KEY      VARCHAR       NOT NULL,
  PAYMENT_ID       VARCHAR       NOT NULL,
  MERCHANT_ID      VARCHAR       NOT NULL,
  REGION           VARCHAR,
  FACT_TYPE        VARCHAR       NOT NULL,
  IDEMPOTENCY_KEY  VARCHAR       NOT NULL,
  TRACE_ID         VARCHAR,
  SOURCE           VARCHAR,
  SOURCE_SEQUENCE  NUMBER(38,0),
  OCCURRED_AT      TIMESTAMP_NTZ(9) NOT NULL,
  POSTED_AT        TIMESTAMP_NTZ(9) NOT NULL,
  ROW_HASH         VARCHAR(64)   NOT NULL
);

CREATE TABLE IF NOT EXISTS FINANCE.STAGE_JOURNAL_LINES (
  LOAD_ID          VARCHAR       NOT NULL,
  LINE_ID          NUMBER(38,0)  NOT NULL,
  ENTRY_ID         NUMBER(38,0)  NOT NULL,
  XID              NUMBER(20,0)  NOT NULL,
  ACCOUNT_CODE     VARCHAR       NOT NULL,
  MERCHANT_ID      VARCHAR       NOT NULL,
  SIDE             VARCHAR       NOT NULL,
  AMOUNT_MINOR     NUMBER(38,0)  NOT NULL,
  CURRENCY         VARCHAR(3)    NOT NULL,
  BALANCE_DATE     DATE          NOT NULL,
  IDEMPOTENCY_KEY  VARCHAR       NOT NULL
);

-- One row per load id (a rerun finds it and adds nothing): the window, what the ledger held in it,
-- and what the MERGE inserted. TOTALS: per currency {lines, debitMinor, creditMinor}, amounts as strings.
CREATE TABLE IF NOT EXISTS FINANCE.LOAD_AUDIT (
  LOAD_ID          VARCHAR       NOT NULL,
  LO_XID           NUMBER(20,0)  NOT NULL,
  HI_XID           NUMBER(20,0)  NOT NULL,
  ENTRIES          NUMBER(38,0)  NOT NULL,
  LINES            NUMBER(38,0)  NOT NULL,
  TOTALS           VARCHAR       NOT NULL,
  ENTRIES_INSERTED NUMBER(38,0)  NOT NULL,
  LINES_INSERTED   NUMBER(38,0)  NOT NULL,
  LOADED_AT        TIMESTAMP_NTZ(9) NOT NULL
);

-- A published window: verified against the ledger, sealed (SHA-256 chained to PREV_SEAL), and from
-- PUBLISHED_AT visible in the views below. The same row is in Postgres' finance.windows.
CREATE TABLE IF NOT EXISTS FINANCE.SEALS (
  LO_XID           NUMBER(20,0)  NOT NULL,
  HI_XID           NUMBER(20,0)  NOT NULL,
  LOAD_ID          VARCHAR       NOT NULL,
  ENTRIES          NUMBER(38,0)  NOT NULL,
  LINES            NUMBER(38,0)  NOT NULL,
  TOTALS           VARCHAR       NOT NULL,
  PREV_SEAL        VARCHAR(64)   NOT NULL,
  SEAL             VARCHAR(64)   NOT NULL,
  PUBLISHED_AT     TIMESTAMP_NTZ(9) NOT NULL
);

-- Movements per posting day, merchant, account and currency, recomputed from the published lines of
-- the days a window touched (so a rerun rewrites the same numbers). AS_OF_XID: the watermark they include.
CREATE TABLE IF NOT EXISTS FINANCE.DAILY_BALANCES (
  BALANCE_DATE     DATE          NOT NULL,
  MERCHANT_ID      VARCHAR       NOT NULL,
  ACCOUNT_CODE     VARCHAR       NOT NULL,
  CURRENCY         VARCHAR(3)    NOT NULL,
  LINES            NUMBER(38,0)  NOT NULL,
  DEBIT_MINOR      NUMBER(38,0)  NOT NULL,
  CREDIT_MINOR     NUMBER(38,0)  NOT NULL,
  AS_OF_XID        NUMBER(20,0)  NOT NULL,
  UPDATED_AT       TIMESTAMP_NTZ(9) NOT NULL
);

-- What is published: every window below HI_XID (windows are contiguous from 0), as of PUBLISHED_AT.
CREATE OR REPLACE VIEW FINANCE.PUBLISHED_WATERMARK AS
SELECT COALESCE(MAX(HI_XID), 0) AS HI_XID, MAX(PUBLISHED_AT) AS AS_OF, COUNT(*) AS WINDOWS FROM FINANCE.SEALS;

-- The views analysts read: published rows only (late rather than partial), each with its AS_OF.
CREATE OR REPLACE VIEW FINANCE.V_JOURNAL_ENTRIES AS
SELECT e.ENTRY_ID, e.XID, e.POSTING_KEY, e.PAYMENT_ID, e.MERCHANT_ID, e.REGION, e.FACT_TYPE, e.IDEMPOTENCY_KEY,
       e.TRACE_ID, e.SOURCE, e.SOURCE_SEQUENCE, e.SOURCE_TOPIC, e.SOURCE_PARTITION, e.SOURCE_OFFSET,
       e.OCCURRED_AT, e.POSTED_AT, e.ROW_HASH, e.LOAD_ID, w.AS_OF
  FROM FINANCE.JOURNAL_ENTRIES e JOIN FINANCE.PUBLISHED_WATERMARK w ON e.XID < w.HI_XID;

CREATE OR REPLACE VIEW FINANCE.V_JOURNAL_LINES AS
SELECT l.LINE_ID, l.ENTRY_ID, l.XID, l.ACCOUNT_CODE, l.MERCHANT_ID, l.SIDE, l.AMOUNT_MINOR, l.CURRENCY,
       l.BALANCE_DATE, l.IDEMPOTENCY_KEY, l.LOAD_ID, w.AS_OF
  FROM FINANCE.JOURNAL_LINES l JOIN FINANCE.PUBLISHED_WATERMARK w ON l.XID < w.HI_XID;

CREATE OR REPLACE VIEW FINANCE.V_DAILY_BALANCES AS
SELECT d.BALANCE_DATE, d.MERCHANT_ID, d.ACCOUNT_CODE, d.CURRENCY, d.LINES, d.DEBIT_MINOR, d.CREDIT_MINOR,
       d.DEBIT_MINOR - d.CREDIT_MINOR AS NET_DEBIT_MINOR, w.AS_OF
  FROM FINANCE.DAILY_BALANCES d JOIN FINANCE.PUBLISHED_WATERMARK w ON d.AS_OF_XID <= w.HI_XID;

-- A merchant's statement: every published line on its accounts with the fact behind it.
CREATE OR REPLACE VIEW FINANCE.V_MERCHANT_STATEMENT AS
SELECT l.MERCHANT_ID, e.POSTED_AT, e.OCCURRED_AT, e.PAYMENT_ID, e.FACT_TYPE, l.ACCOUNT_CODE, l.SIDE,
       l.AMOUNT_MINOR, l.CURRENCY, e.ENTRY_ID, l.LINE_ID, e.IDEMPOTENCY_KEY, e.TRACE_ID, e.LOAD_ID, w.AS_OF
  FROM FINANCE.JOURNAL_LINES l
  JOIN FINANCE.JOURNAL_ENTRIES e ON e.ENTRY_ID = l.ENTRY_ID
  JOIN FINANCE.PUBLISHED_WATERMARK w ON l.XID < w.HI_XID
 WHERE l.ACCOUNT_CODE = 'merchant_payable';
