-- Directory versions (issue 8): every insert, update or delete of an environment, application,
-- user or signing key gives its environment a new version (the next value of one sequence for
-- the whole database), in the same transaction, by trigger, whoever writes: this process, another
-- `assent serve` on the same file, `assent secret-key rotate`. The in-process cache
-- (`assent_store::cache`) reads, once a second, the environments whose version passed the last
-- one it saw and drops what it holds of them. One row per environment, so nothing grows.

CREATE TABLE directory_versions (
    environment_id TEXT    NOT NULL PRIMARY KEY,
    seq            INTEGER NOT NULL
);
CREATE INDEX directory_versions_seq ON directory_versions (seq);

CREATE TRIGGER environments_insert_version AFTER INSERT ON environments
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER environments_update_version AFTER UPDATE ON environments
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER environments_delete_version AFTER DELETE ON environments
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (OLD.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER applications_insert_version AFTER INSERT ON applications
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER applications_update_version AFTER UPDATE ON applications
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER applications_delete_version AFTER DELETE ON applications
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (OLD.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER users_insert_version AFTER INSERT ON users
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER users_update_version AFTER UPDATE ON users
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER users_delete_version AFTER DELETE ON users
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (OLD.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER signing_keys_insert_version AFTER INSERT ON signing_keys
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER signing_keys_update_version AFTER UPDATE ON signing_keys
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (NEW.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
CREATE TRIGGER signing_keys_delete_version AFTER DELETE ON signing_keys
BEGIN
    INSERT INTO directory_versions (environment_id, seq)
    VALUES (OLD.environment_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_versions))
    ON CONFLICT (environment_id) DO UPDATE SET seq = excluded.seq;
END;
