-- Reconciliation results in Snowflake (docs/reconciliation.md), copied from Postgres' reconciliation.*
-- (migration 008) after each run: every run of a window (current and superseded: history) and its
-- breaks. Money is NUMBER(38,0) minor units with its ISO currency. The copy replaces a window's rows
-- in one transaction, so a re-run or a retried copy never duplicates.
CREATE TABLE IF NOT EXISTS FINANCE.RECONCILIATION_RUNS (
  RUN_ID            NUMBER(38,0)  NOT NULL,
  WINDOW_DAY        DATE          NOT NULL,
  SCOPE             VARCHAR       NOT NULL,
  WORKFLOW_ID       VARCHAR       NOT NULL,
  STATUS            VARCHAR       NOT NULL,
  SUPERSEDED_BY     NUMBER(38,0),
  MATCHED           NUMBER(38,0)  NOT NULL,
  PARTIALLY_MATCHED NUMBER(38,0)  NOT NULL,
  UNMATCHED         NUMBER(38,0)  NOT NULL,
  BREAKS            NUMBER(38,0)  NOT NULL,
  SUMMARY           VARCHAR       NOT NULL,
  STARTED_AT        TIMESTAMP_NTZ(9) NOT NULL,
  FINISHED_AT       TIMESTAMP_NTZ(9) NOT NULL
);

CREATE TABLE IF NOT EXISTS FINANCE.RECONCILIATION_BREAKS (
  RUN_ID            NUMBER(38,0)  NOT NULL,
  BREAK_KEY         VARCHAR       NOT NULL,
  WINDOW_DAY        DATE          NOT NULL,
  SCOPE             VARCHAR       NOT NULL,
  BREAK_TYPE        VARCHAR       NOT NULL,
  PROVIDER          VARCHAR,
  PAYMENT_ID        VARCHAR       NOT NULL,
  KIND              VARCHAR       NOT NULL,
  REFERENCE         VARCHAR       NOT NULL,
  LINE_REFERENCE    VARCHAR,
  AMOUNT_MINOR      NUMBER(38,0)  NOT NULL,
  CURRENCY          VARCHAR(3)    NOT NULL,
  DIRECTION         NUMBER(2,0)   NOT NULL,
  STATUS            VARCHAR       NOT NULL,
  FIRST_SEEN_WINDOW DATE          NOT NULL,
  RESOLVED_AT       TIMESTAMP_NTZ(9),
  SUSPENSE_POSTING_KEY VARCHAR
);
