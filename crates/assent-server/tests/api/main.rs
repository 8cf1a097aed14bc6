//! assent-server's integration tests, one binary (each file in `tests/` would be a separate
//! link): the management API and the authorization-server endpoints, driven through the real
//! router over a temporary SQLite store and a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod devices;
mod management;
mod metrics;
mod oauth;
mod support;
