-- Migration 0001: the contract's backtest_jobs table (section 2) with btstore's own columns,
-- the platform's indexes and the indexes btstore's queries need. SQLite has no UUID, DATE,
-- TIMESTAMPTZ or JSONB types: ids are UUID text, dates 'YYYY-MM-DD' text, timestamps
-- fixed-width RFC 3339 UTC text with microseconds ('2026-11-24T13:05:09.123456Z') so that
-- text order is time order, JSON is text checked by json_valid().

CREATE TABLE backtest_jobs (
  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
  job_id VARCHAR(64) NOT NULL UNIQUE,
  status VARCHAR(20) NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  alpha_name VARCHAR(255) NOT NULL,
  start_date DATE NOT NULL,
  end_date DATE NOT NULL,
  weight_method VARCHAR(50) NOT NULL,
  config_json TEXT NOT NULL CHECK (json_valid(config_json)),
  created_at TEXT NOT NULL,
  started_at TEXT,
  completed_at TEXT,
  worker_id VARCHAR(255),
  progress_pct INTEGER NOT NULL DEFAULT 0 CHECK (progress_pct BETWEEN 0 AND 100),
  job_timeout INTEGER NOT NULL DEFAULT 3600 CHECK (job_timeout BETWEEN 300 AND 14400),
  result_path VARCHAR(512),
  mean_ic REAL,
  icir REAL,
  hit_rate REAL,
  coverage REAL,
  long_short_spread REAL,
  average_turnover REAL,
  decay_half_life REAL,
  snapshot_id VARCHAR(255),
  dataset_version_ids TEXT CHECK (dataset_version_ids IS NULL OR json_valid(dataset_version_ids)),
  error_message TEXT,
  retry_count INTEGER NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
  created_by VARCHAR(255) NOT NULL,

  -- btstore's columns. priority: 0 high, 1 normal, 2 low (claims take the smallest first).
  priority INTEGER NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 2),
  max_retries INTEGER NOT NULL DEFAULT 2 CHECK (max_retries >= 0),
  -- The number of the current or last attempt; every worker write is fenced by it.
  attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  -- The single truth of a cancel request.
  cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
  heartbeat_at TEXT,
  lease_expires_at TEXT,
  -- A retried job is not claimed before this time (backoff).
  run_after TEXT,
  checkpoint_path TEXT,
  -- Exempt from retention.
  pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
  -- Set by retention when it starts removing the job (mark, sweep, delete).
  expiring_at TEXT,

  CHECK (end_date >= start_date),
  -- The contract: snapshot_id and dataset_version_ids must be set before a job is completed.
  CHECK (status <> 'completed' OR (snapshot_id IS NOT NULL AND dataset_version_ids IS NOT NULL))
);

-- The platform's indexes (contract section 2).
CREATE INDEX backtest_jobs_status_idx ON backtest_jobs (status);
CREATE INDEX backtest_jobs_created_at_idx ON backtest_jobs (created_at);
CREATE INDEX backtest_jobs_alpha_name_idx ON backtest_jobs (alpha_name);
CREATE INDEX backtest_jobs_created_by_idx ON backtest_jobs (created_by);
CREATE INDEX backtest_jobs_snapshot_id_idx ON backtest_jobs (snapshot_id);
CREATE INDEX backtest_jobs_user_status_created_idx
  ON backtest_jobs (created_by, status, created_at DESC);

-- Claiming: the next pending jobs by priority, then age.
CREATE INDEX backtest_jobs_claim_idx ON backtest_jobs (status, priority, created_at);
-- Listing: keyset pages newest first, (created_at, id) < cursor, with a unique tie-breaker.
CREATE INDEX backtest_jobs_keyset_idx ON backtest_jobs (created_at DESC, id DESC);
-- Listing filtered by user, alpha or status: the filter's equality prefix, then the keyset order,
-- so a filtered page reads only its own rows at any depth instead of scanning the keyset index.
CREATE INDEX backtest_jobs_user_keyset_idx ON backtest_jobs (created_by, created_at DESC, id DESC);
CREATE INDEX backtest_jobs_alpha_keyset_idx ON backtest_jobs (alpha_name, created_at DESC, id DESC);
CREATE INDEX backtest_jobs_status_keyset_idx ON backtest_jobs (status, created_at DESC, id DESC);
-- Rescue: running jobs whose lease expired.
CREATE INDEX backtest_jobs_lease_idx ON backtest_jobs (lease_expires_at)
  WHERE status = 'running';
-- Retention: terminal jobs by age (completed_at, or created_at where that is null), and the
-- jobs a run has already marked.
CREATE INDEX backtest_jobs_retention_idx ON backtest_jobs (COALESCE(completed_at, created_at))
  WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX backtest_jobs_expiring_idx ON backtest_jobs (job_id) WHERE expiring_at IS NOT NULL;
