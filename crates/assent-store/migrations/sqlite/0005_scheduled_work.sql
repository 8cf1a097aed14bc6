-- Durable scheduled work (issue 7): rows with a due time, written in the same transaction as
-- the change that schedules them, claimed by one worker at a time (a lease), deleted in the
-- same transaction as the change that finishes them.

CREATE TABLE scheduled_work (
    id             TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    -- The job as JSON (assent_core::transition::Job).
    payload        TEXT NOT NULL,
    due_at         INTEGER NOT NULL,
    -- Who holds it and until when (NULL: nobody). A claim past its lease is free again.
    claimed_by     TEXT,
    claimed_until  INTEGER,
    attempts       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);
CREATE INDEX scheduled_work_due ON scheduled_work (due_at);

-- Requests accepted by an earlier version kept their automatic SANDBOX decision (§6.5) in an
-- in-memory timer only. Those still pending and unexpired get it scheduled here, due when the
-- timer would have fired (created_at + the user's delay). The payload is the serde JSON of
-- assent_core::transition::Job (the store suite checks this shape); now is Unix milliseconds.
INSERT INTO scheduled_work (id, environment_id, kind, payload, due_at, created_at)
SELECT lower(hex(randomblob(16))),
       r.environment_id,
       'AUTO_DECISION',
       json_object('kind', 'AUTO_DECISION', 'auth_req_id', r.auth_req_id,
                   'outcome', u.auto_decision),
       r.created_at + COALESCE(u.auto_decision_delay_ms, 0),
       CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  FROM ciba_requests r
  JOIN users u ON u.environment_id = r.environment_id AND u.id = r.user_id
  JOIN environments e ON e.id = r.environment_id
 WHERE e.env_type = 'SANDBOX'
   AND r.status = 'PENDING'
   AND u.auto_decision IS NOT NULL
   AND r.expires_at > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
