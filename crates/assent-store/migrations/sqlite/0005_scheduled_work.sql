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
