-- Migration 0003: the engine that runs a job (its config's "engine" key, or "synthetic"), so that
-- a worker claims only the jobs of the engines it has and workers with different engines share
-- one catalog. Numbered 0003 because 0002 is the platform's cost columns; the runner applies
-- each missing version in order, so either may land first.

ALTER TABLE backtest_jobs ADD COLUMN engine VARCHAR(64) NOT NULL DEFAULT 'synthetic';

UPDATE backtest_jobs SET engine = json_extract(config_json, '$.engine')
WHERE json_type(config_json, '$.engine') = 'text'
  AND length(json_extract(config_json, '$.engine')) BETWEEN 1 AND 64;

-- Claims: pending jobs of the worker's engines by priority then age.
CREATE INDEX backtest_jobs_engine_claim_idx ON backtest_jobs (status, engine, priority, created_at);
