//! The grants of the token endpoint, one file each: a [`GrantHandler`] parses its
//! [`TokenRequest`] variant and answers it.
//!
//! [`GrantHandler`]: super::tokens::GrantHandler
//! [`TokenRequest`]: super::tokens::TokenRequest

mod ciba;
mod refresh_token;

pub use ciba::CibaGrant;
pub use refresh_token::RefreshTokenGrant;
