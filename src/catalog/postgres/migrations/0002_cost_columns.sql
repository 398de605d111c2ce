-- Migration 0002: the platform's cost model blocks (its migration 0026), copied from a result's
-- summary.json when the job completes. NULL for jobs whose result has none.
--
-- Adding columns changes what `SELECT *` returns: a client that prepared such a query before
-- this migration (psycopg's cached plans in a pool opened earlier) gets "cached plan must not
-- change result type" until its connections are renewed.

ALTER TABLE backtest_jobs
  ADD COLUMN cost_config JSONB DEFAULT NULL,
  ADD COLUMN cost_summary JSONB DEFAULT NULL;
