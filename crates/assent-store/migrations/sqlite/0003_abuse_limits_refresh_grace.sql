-- Abuse limits per environment (NULL = no limit) and the refresh-token reuse grace per
-- application (issue 6). Environments that exist already get their type's defaults:
-- PRODUCTION 5 pending requests per user and 600 requests per application per minute,
-- SANDBOX none.

ALTER TABLE environments ADD COLUMN max_pending_requests_per_user INTEGER;
ALTER TABLE environments ADD COLUMN authorization_requests_per_minute INTEGER;
UPDATE environments
   SET max_pending_requests_per_user = 5, authorization_requests_per_minute = 600
 WHERE env_type = 'PRODUCTION';

ALTER TABLE applications ADD COLUMN refresh_token_reuse_grace_seconds INTEGER NOT NULL DEFAULT 0;

-- The counts of the guarded insert: a user's pending, unexpired requests, and an
-- application's requests of the last minute.
CREATE INDEX ciba_requests_user_pending ON ciba_requests (environment_id, user_id, status, expires_at);
CREATE INDEX ciba_requests_application_recent ON ciba_requests (environment_id, application_id, created_at);
