-- Assent's schema (SQLite). The PostgreSQL schema mirrors it table for table and column for
-- column: INTEGER timestamps become BIGINT (Unix milliseconds), INTEGER booleans BOOLEAN, BLOB
-- BYTEA, and JSON TEXT columns may stay TEXT (the store (de)serialises them itself).
--
-- Every row lives in one environment: primary keys are (environment_id, <id>) and every
-- foreign key carries environment_id, so rows of two environments can never reference each
-- other and deleting an environment cascades to everything in it.
--
-- Case-insensitive uniqueness (usernames, emails) is enforced on `*_lower` columns computed by
-- the store (Rust's `str::to_lowercase`), so SQLite and PostgreSQL fold case identically.

CREATE TABLE environments (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT,
    env_type    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE INDEX environments_list ON environments (created_at, id);

CREATE TABLE applications (
    environment_id                 TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    id                             TEXT    NOT NULL,
    name                           TEXT    NOT NULL,
    description                    TEXT,
    enabled                        INTEGER NOT NULL,
    protocol                       TEXT    NOT NULL,
    app_type                       TEXT    NOT NULL,
    grant_types                    TEXT    NOT NULL, -- JSON array of GrantType wire names
    token_endpoint_auth_method     TEXT    NOT NULL,
    jwks                           TEXT,             -- JSON, exactly as given
    jwks_url                       TEXT,
    id_token_signing_algorithm     TEXT    NOT NULL,
    access_token_duration_seconds  INTEGER NOT NULL,
    refresh_token_duration_seconds INTEGER NOT NULL,
    ciba                           TEXT    NOT NULL, -- JSON CibaSettings
    secret_sealed                  BLOB    NOT NULL,
    secret_updated_at              INTEGER NOT NULL,
    created_at                     INTEGER NOT NULL,
    updated_at                     INTEGER NOT NULL,
    PRIMARY KEY (environment_id, id)
);

CREATE INDEX applications_list ON applications (environment_id, created_at, id);

CREATE TABLE users (
    environment_id         TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    id                     TEXT    NOT NULL,
    username               TEXT    NOT NULL,
    username_lower         TEXT    NOT NULL,
    email                  TEXT,
    email_lower            TEXT,
    given_name             TEXT,
    family_name            TEXT,
    phone_number           TEXT,
    phone_normalized       TEXT,
    password_hash          TEXT,
    enabled                INTEGER NOT NULL,
    auto_decision          TEXT,
    auto_decision_delay_ms INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    PRIMARY KEY (environment_id, id)
);

CREATE UNIQUE INDEX users_username_key ON users (environment_id, username_lower);
CREATE UNIQUE INDEX users_email_key ON users (environment_id, email_lower) WHERE email_lower IS NOT NULL;
CREATE INDEX users_phone ON users (environment_id, phone_normalized);
CREATE INDEX users_list ON users (environment_id, created_at, id);

CREATE TABLE signing_keys (
    environment_id     TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    id                 TEXT    NOT NULL,
    algorithm          TEXT    NOT NULL,
    public_jwk         TEXT    NOT NULL, -- JSON
    private_key_sealed BLOB    NOT NULL,
    is_current         INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    retire_at          INTEGER,
    PRIMARY KEY (environment_id, id)
);

-- At most one current key per environment and algorithm.
CREATE UNIQUE INDEX signing_keys_current ON signing_keys (environment_id, algorithm) WHERE is_current;

CREATE TABLE ciba_requests (
    environment_id            TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    auth_req_id               TEXT    NOT NULL,
    application_id            TEXT    NOT NULL,
    user_id                   TEXT    NOT NULL,
    scope                     TEXT    NOT NULL,
    binding_message           TEXT,
    acr_values                TEXT,
    authorization_details     TEXT,             -- JSON
    delivery_mode             TEXT    NOT NULL,
    client_notification_token TEXT,
    created_at                INTEGER NOT NULL,
    expires_at                INTEGER NOT NULL,
    interval_seconds          INTEGER NOT NULL,
    last_polled_at            INTEGER,
    status                    TEXT    NOT NULL, -- never 'EXPIRED': that is derived from expires_at
    decision                  TEXT,             -- JSON Decision
    redeemed_at               INTEGER,
    PRIMARY KEY (environment_id, auth_req_id),
    FOREIGN KEY (environment_id, application_id) REFERENCES applications (environment_id, id) ON DELETE CASCADE,
    FOREIGN KEY (environment_id, user_id) REFERENCES users (environment_id, id) ON DELETE CASCADE
);

CREATE INDEX ciba_requests_list ON ciba_requests (environment_id, created_at, auth_req_id);
CREATE INDEX ciba_requests_application ON ciba_requests (environment_id, application_id);
CREATE INDEX ciba_requests_user ON ciba_requests (environment_id, user_id);
CREATE INDEX ciba_requests_expires ON ciba_requests (expires_at);

-- Tokens reference their application and user (cascading), but not their CIBA request:
-- requests are purged a day after expiry while their refresh tokens may live on.
CREATE TABLE access_tokens (
    environment_id    TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    jti               TEXT    NOT NULL,
    application_id    TEXT    NOT NULL,
    user_id           TEXT,
    scope             TEXT    NOT NULL,
    auth_req_id       TEXT,
    refresh_family_id TEXT,
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    revoked           INTEGER NOT NULL,
    PRIMARY KEY (environment_id, jti),
    FOREIGN KEY (environment_id, application_id) REFERENCES applications (environment_id, id) ON DELETE CASCADE,
    FOREIGN KEY (environment_id, user_id) REFERENCES users (environment_id, id) ON DELETE CASCADE
);

CREATE INDEX access_tokens_request ON access_tokens (environment_id, auth_req_id);
CREATE INDEX access_tokens_family ON access_tokens (environment_id, refresh_family_id);
CREATE INDEX access_tokens_application ON access_tokens (environment_id, application_id);
CREATE INDEX access_tokens_user ON access_tokens (environment_id, user_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

CREATE TABLE refresh_tokens (
    environment_id TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    token_hash     TEXT    NOT NULL,
    family_id      TEXT    NOT NULL,
    application_id TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    auth_req_id    TEXT,
    auth_time      INTEGER NOT NULL,
    acr            TEXT,
    amr            TEXT    NOT NULL, -- JSON array of strings
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    rotated_at     INTEGER,
    revoked        INTEGER NOT NULL,
    PRIMARY KEY (environment_id, token_hash),
    FOREIGN KEY (environment_id, application_id) REFERENCES applications (environment_id, id) ON DELETE CASCADE,
    FOREIGN KEY (environment_id, user_id) REFERENCES users (environment_id, id) ON DELETE CASCADE
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (environment_id, family_id);
CREATE INDEX refresh_tokens_request ON refresh_tokens (environment_id, auth_req_id);
CREATE INDEX refresh_tokens_application ON refresh_tokens (environment_id, application_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (environment_id, user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Single-use JWT ids (client assertions, request objects), remembered until they expire.
CREATE TABLE used_jtis (
    environment_id TEXT    NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    namespace      TEXT    NOT NULL,
    jti            TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (environment_id, namespace, jti)
);

CREATE INDEX used_jtis_expires ON used_jtis (expires_at);
