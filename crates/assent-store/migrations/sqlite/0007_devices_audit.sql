-- Device keys, their one-time enrolment codes and the audit log (issue 9; spec §6.1, §6.4).

CREATE TABLE devices (
    environment_id TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    algorithm      TEXT    NOT NULL, -- ES256 | EdDSA
    public_jwk     TEXT    NOT NULL, -- JSON, public members only, kid = id
    enabled        INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (environment_id, id),
    FOREIGN KEY (environment_id, user_id) REFERENCES users (environment_id, id) ON DELETE CASCADE
);
CREATE INDEX devices_list ON devices (environment_id, user_id, created_at, id);

-- Only the SHA-256 of a code is kept; a code is deleted when it is used.
CREATE TABLE device_enrollments (
    environment_id TEXT    NOT NULL,
    code_hash      TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (environment_id, code_hash),
    FOREIGN KEY (environment_id, user_id) REFERENCES users (environment_id, id) ON DELETE CASCADE
);
CREATE INDEX device_enrollments_expires ON device_enrollments (expires_at);

-- Append-only; seq (the rowid) is the order of appends. Entries outlive the requests, users
-- and devices they name (no foreign keys but the environment's) until they are purged.
CREATE TABLE activities (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL,
    environment_id TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    type           TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    auth_req_id    TEXT,
    user_id        TEXT,
    application_id TEXT,
    device_id      TEXT,
    actor_type     TEXT    NOT NULL,
    actor_id       TEXT,
    channel        TEXT,
    correlation_id TEXT,
    details        TEXT    NOT NULL -- JSON object
);
CREATE INDEX activities_list ON activities (environment_id, seq);
CREATE INDEX activities_request ON activities (environment_id, auth_req_id) WHERE auth_req_id IS NOT NULL;
CREATE INDEX activities_at ON activities (at);
-- A device is told of a request once in the log, however often it fetches it.
CREATE UNIQUE INDEX activities_device_notified ON activities (environment_id, auth_req_id, device_id)
    WHERE type = 'DEVICE_NOTIFIED';
