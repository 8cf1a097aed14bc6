//! JWS algorithm identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CryptoError;
use crate::error::sanitize;

/// An asymmetric JWS signing algorithm supported by Assent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl SigningAlg {
    /// Every supported signing algorithm.
    pub const ALL: [SigningAlg; 9] = [
        SigningAlg::RS256,
        SigningAlg::RS384,
        SigningAlg::RS512,
        SigningAlg::PS256,
        SigningAlg::PS384,
        SigningAlg::PS512,
        SigningAlg::ES256,
        SigningAlg::ES384,
        SigningAlg::EdDSA,
    ];

    /// The JOSE name (`"RS256"` … `"EdDSA"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::RS384 => "RS384",
            SigningAlg::RS512 => "RS512",
            SigningAlg::PS256 => "PS256",
            SigningAlg::PS384 => "PS384",
            SigningAlg::PS512 => "PS512",
            SigningAlg::ES256 => "ES256",
            SigningAlg::ES384 => "ES384",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    /// Parses an exact JOSE name. `"Ed25519"` (RFC 9864) is accepted as an alias of
    /// `EdDSA`. `"none"`, `HS*` and anything unknown give `None`.
    pub fn parse(s: &str) -> Option<SigningAlg> {
        Some(match s {
            "RS256" => SigningAlg::RS256,
            "RS384" => SigningAlg::RS384,
            "RS512" => SigningAlg::RS512,
            "PS256" => SigningAlg::PS256,
            "PS384" => SigningAlg::PS384,
            "PS512" => SigningAlg::PS512,
            "ES256" => SigningAlg::ES256,
            "ES384" => SigningAlg::ES384,
            "EdDSA" | "Ed25519" => SigningAlg::EdDSA,
            _ => return None,
        })
    }

    /// True for the RSA families (RS* and PS*).
    pub fn is_rsa(&self) -> bool {
        matches!(
            self,
            SigningAlg::RS256
                | SigningAlg::RS384
                | SigningAlg::RS512
                | SigningAlg::PS256
                | SigningAlg::PS384
                | SigningAlg::PS512
        )
    }

    /// True for ECDSA (ES256, ES384).
    pub fn is_ec(&self) -> bool {
        matches!(self, SigningAlg::ES256 | SigningAlg::ES384)
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlg::parse(s).ok_or_else(|| CryptoError::UnsupportedAlgorithm(sanitize(s)))
    }
}

impl Serialize for SigningAlg {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SigningAlg {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        SigningAlg::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unsupported signing algorithm {:?}", sanitize(&s)))
        })
    }
}

/// An HMAC JWS algorithm (used only for client_secret_jwt and similar shared-secret cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HmacAlg {
    HS256,
    HS384,
    HS512,
}

impl HmacAlg {
    /// Every supported HMAC algorithm.
    pub const ALL: [HmacAlg; 3] = [HmacAlg::HS256, HmacAlg::HS384, HmacAlg::HS512];

    /// The JOSE name.
    pub fn as_str(&self) -> &'static str {
        match self {
            HmacAlg::HS256 => "HS256",
            HmacAlg::HS384 => "HS384",
            HmacAlg::HS512 => "HS512",
        }
    }

    /// Parses an exact JOSE name.
    pub fn parse(s: &str) -> Option<HmacAlg> {
        Some(match s {
            "HS256" => HmacAlg::HS256,
            "HS384" => HmacAlg::HS384,
            "HS512" => HmacAlg::HS512,
            _ => return None,
        })
    }

    pub(crate) fn aws_alg(&self) -> aws_lc_rs::hmac::Algorithm {
        match self {
            HmacAlg::HS256 => aws_lc_rs::hmac::HMAC_SHA256,
            HmacAlg::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
            HmacAlg::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
        }
    }
}

impl fmt::Display for HmacAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HmacAlg {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HmacAlg::parse(s).ok_or_else(|| CryptoError::UnsupportedAlgorithm(sanitize(s)))
    }
}

impl Serialize for HmacAlg {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HmacAlg {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        HmacAlg::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unsupported HMAC algorithm {:?}", sanitize(&s)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for alg in SigningAlg::ALL {
            assert_eq!(SigningAlg::parse(alg.as_str()), Some(alg));
            assert_eq!(alg.to_string(), alg.as_str());
            assert_eq!(alg.as_str().parse::<SigningAlg>().unwrap(), alg);
        }
        for alg in HmacAlg::ALL {
            assert_eq!(HmacAlg::parse(alg.as_str()), Some(alg));
        }
    }

    #[test]
    fn aliases_and_rejections() {
        assert_eq!(SigningAlg::parse("Ed25519"), Some(SigningAlg::EdDSA));
        for bad in [
            "none", "None", "HS256", "HS384", "HS512", "rs256", "ES512", "", "EdDSA ",
        ] {
            assert_eq!(SigningAlg::parse(bad), None, "{bad}");
        }
        assert!(matches!(
            "none".parse::<SigningAlg>(),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(HmacAlg::parse("RS256"), None);
        assert_eq!(HmacAlg::parse("hs256"), None);
    }

    #[test]
    fn is_rsa() {
        let rsa: Vec<_> = SigningAlg::ALL.iter().filter(|a| a.is_rsa()).collect();
        assert_eq!(rsa.len(), 6);
        assert!(!SigningAlg::ES256.is_rsa());
        assert!(!SigningAlg::EdDSA.is_rsa());
        assert!(SigningAlg::PS512.is_rsa());
    }

    #[test]
    fn serde_string_form() {
        assert_eq!(
            serde_json::to_string(&SigningAlg::PS384).unwrap(),
            "\"PS384\""
        );
        let a: SigningAlg = serde_json::from_str("\"Ed25519\"").unwrap();
        assert_eq!(a, SigningAlg::EdDSA);
        let a: SigningAlg = serde_json::from_str("\"ES256\"").unwrap();
        assert_eq!(a, SigningAlg::ES256);
        assert!(serde_json::from_str::<SigningAlg>("\"none\"").is_err());
        assert!(serde_json::from_str::<SigningAlg>("\"HS256\"").is_err());
        let v: Vec<SigningAlg> = serde_json::from_str("[\"RS256\",\"EdDSA\"]").unwrap();
        assert_eq!(v, vec![SigningAlg::RS256, SigningAlg::EdDSA]);
        assert_eq!(serde_json::to_string(&HmacAlg::HS512).unwrap(), "\"HS512\"");
    }
}
