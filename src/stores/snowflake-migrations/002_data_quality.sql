-- Data-quality results (docs/data-quality.md), one row per check, window and run, as in Postgres'
-- quality.dq_results. Appended by run id (MERGE): a retried write adds nothing.
CREATE SCHEMA IF NOT EXISTS QUALITY;

CREATE TABLE IF NOT EXISTS QUALITY.DQ_RESULTS (
  RUN_ID       VARCHAR       NOT NULL,
  DQ_WINDOW    VARCHAR       NOT NULL,
  WINDOW_START TIMESTAMP_NTZ(9) NOT NULL,
  WINDOW_END   TIMESTAMP_NTZ(9) NOT NULL,
  SCOPE        VARCHAR       NOT NULL,
  CHECK_NAME   VARCHAR       NOT NULL,
  SEVERITY     VARCHAR       NOT NULL,
  MONEY        BOOLEAN       NOT NULL,
  PASSED       BOOLEAN       NOT NULL,
  MEASURED     NUMBER(38,6)  NOT NULL,
  THRESHOLD    NUMBER(38,6)  NOT NULL,
  SUMMARY      VARCHAR       NOT NULL,
  DETAILS      VARCHAR       NOT NULL,
  RAN_AT       TIMESTAMP_NTZ(9) NOT NULL
);
