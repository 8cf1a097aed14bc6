//! Typed identifiers, so an application id cannot be passed where an environment id is
//! expected. Each is a string on the wire and in the database (`serde(transparent)`), reads as
//! `&str` where a string is wanted (`Deref`), and is built from a string only explicitly.
//!
//! ```
//! use assent_core::EnvironmentId;
//!
//! fn environment(id: &EnvironmentId) -> &str {
//!     id
//! }
//! assert_eq!(environment(&EnvironmentId::from("env-1")), "env-1");
//! ```
//!
//! An [`ApplicationId`] is not an [`EnvironmentId`]:
//!
//! ```compile_fail
//! use assent_core::{ApplicationId, EnvironmentId};
//!
//! fn environment(id: &EnvironmentId) -> &str {
//!     id
//! }
//! environment(&ApplicationId::from("app-1"));
//! ```
//!
//! Nor is a bare string:
//!
//! ```compile_fail
//! use assent_core::EnvironmentId;
//!
//! fn environment(id: &EnvironmentId) -> &str {
//!     id
//! }
//! environment("env-1");
//! ```

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }
        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_owned())
            }
        }
        impl From<&String> for $name {
            fn from(id: &String) -> Self {
                $name(id.clone())
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }
        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

id_type!(
    /// An environment (a tenant: its own issuer, applications, users and keys).
    EnvironmentId
);
id_type!(
    /// An application; also its OAuth `client_id`.
    ApplicationId
);
id_type!(
    /// A user of an environment; the `sub` of its tokens.
    UserId
);
id_type!(
    /// A CIBA request's `auth_req_id` (256 random bits, base64url).
    AuthReqId
);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn serialises_as_a_bare_string() {
        let id = AuthReqId::from("abc-123");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""abc-123""#);
        let back: AuthReqId = serde_json::from_str(r#""abc-123""#).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<UserId>("17").is_err());
    }

    #[test]
    fn a_field_of_a_struct_is_a_bare_string() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Owner {
            environment_id: EnvironmentId,
            application_id: ApplicationId,
        }
        let owner = Owner {
            environment_id: "env".into(),
            application_id: "app".into(),
        };
        let json = serde_json::to_value(&owner).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"environment_id": "env", "application_id": "app"})
        );
        assert_eq!(serde_json::from_value::<Owner>(json).unwrap(), owner);
    }

    #[test]
    fn reads_and_compares_as_its_string() {
        let id = EnvironmentId::new(String::from("env-1"));
        assert_eq!(id.as_str(), "env-1");
        assert_eq!(&*id, "env-1");
        assert_eq!(id.to_string(), "env-1");
        assert_eq!(id, "env-1");
        assert_eq!("env-1", id);
        assert_eq!(*"env-1", id);
        let owned = String::from("env-1");
        assert_eq!(id, owned);
        assert_eq!(owned, id);
        assert_ne!(id, "env-2");
        assert_eq!(String::from(id.clone()), "env-1");
        assert_eq!(id.into_string(), "env-1");
    }

    #[test]
    fn a_map_keyed_by_id_is_looked_up_by_str() {
        let mut users = HashMap::new();
        users.insert(UserId::from("u-1"), 1);
        assert_eq!(users.get("u-1"), Some(&1));
        assert_eq!(users.get("u-2"), None);
    }
}
