-- Migration 0002: the platform's cost model blocks (its migration 0026), copied from a result's
-- summary.json when the job completes. NULL for jobs whose result has none. JSON is text
-- checked by json_valid(), as in 0001.

ALTER TABLE backtest_jobs
  ADD COLUMN cost_config TEXT DEFAULT NULL CHECK (cost_config IS NULL OR json_valid(cost_config));
ALTER TABLE backtest_jobs
  ADD COLUMN cost_summary TEXT DEFAULT NULL CHECK (cost_summary IS NULL OR json_valid(cost_summary));
