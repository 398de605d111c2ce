-- Migration 0004: the bearer tokens of `btstore serve` (contract section 9). Only the SHA-256 of a
-- token is kept: the token itself is printed once by `btstore token create` and never stored, so
-- a copy of the catalog does not hand out access. token_id names a token for list and revoke;
-- a revoked token stays listed (who had access, and until when).

CREATE TABLE btstore_tokens (
  token_id TEXT PRIMARY KEY,
  user_name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('reader', 'submitter', 'admin')),
  token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
