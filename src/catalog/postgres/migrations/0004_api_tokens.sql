-- Migration 0004: the bearer tokens of `btstore serve` (contract section 9). Only the SHA-256 of a
-- token is kept: the token itself is printed once by `btstore token create` and never stored, so
-- a copy of the catalog does not hand out access. token_id names a token for list and revoke;
-- a revoked token stays listed (who had access, and until when). A new table, so the platform's
-- `SELECT *` on backtest_jobs is not affected.

CREATE TABLE btstore_tokens (
  token_id VARCHAR(32) PRIMARY KEY,
  user_name VARCHAR(255) NOT NULL,
  role VARCHAR(20) NOT NULL CHECK (role IN ('reader', 'submitter', 'admin')),
  token_hash CHAR(64) NOT NULL UNIQUE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  revoked_at TIMESTAMPTZ
);
