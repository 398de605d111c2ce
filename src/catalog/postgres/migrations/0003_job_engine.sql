-- Migration 0003: the engine that runs a job (its config's "engine" key, or 'synthetic'), so that
-- a worker claims only the jobs of the engines it has and workers with different engines share
-- one catalog. Numbered 0003 because 0002 is the platform's cost columns; the runner applies
-- each missing version in order, so either may land first. Like every migration that adds a
-- column, it makes psycopg's prepared `SELECT *` fail in pools opened before it ("cached plan
-- must not change result type"): reopen such pools after migrating.

ALTER TABLE backtest_jobs ADD COLUMN engine VARCHAR(64) NOT NULL DEFAULT 'synthetic';

UPDATE backtest_jobs SET engine = config_json->>'engine'
WHERE jsonb_typeof(config_json->'engine') = 'string'
  AND length(config_json->>'engine') BETWEEN 1 AND 64;

-- Claims: pending jobs of the worker's engines by priority then age.
CREATE INDEX backtest_jobs_engine_claim_idx ON backtest_jobs (status, engine, priority, created_at);
