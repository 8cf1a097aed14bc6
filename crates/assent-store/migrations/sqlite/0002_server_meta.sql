-- Server-wide values that belong to the database as a whole, not to an environment: the
-- at-rest key check (a MAC of a fixed label under the key, never the key itself).
CREATE TABLE server_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
