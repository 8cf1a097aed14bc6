//! Assent's domain model and protocol rules. Nothing here performs I/O or reads the clock:
//! every function that cares about time takes `now` as an argument.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod ciba;
pub mod device;
pub mod error;
pub mod grant;
pub mod hint;
pub mod identifier;
pub mod ids;
pub mod jwt;
pub mod model;
pub mod page;
pub mod refresh;
pub mod retention;
pub mod time;
pub mod transition;
pub mod validate;

pub use error::{OAuthError, OAuthErrorCode};
pub use ids::*;
pub use model::*;
pub use page::{ListPage, Page};
pub use time::Timestamp;
