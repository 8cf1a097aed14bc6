-- From this version on, users.username_lower and users.email_lower hold the comparison key of
-- the identifier profile (RFC 8265 UsernameCaseMapped, computed by assent_core::identifier)
-- rather than Rust's str::to_lowercase. The two agree on ASCII; rows written by an earlier
-- version are re-keyed by the store, in Rust, right after this migration is applied (the store
-- looks for this marker table, re-keys, and drops it in one transaction).
CREATE TABLE identifier_rekey_pending (since INTEGER NOT NULL);
INSERT INTO identifier_rekey_pending (since) VALUES (0);
