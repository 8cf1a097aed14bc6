//! The one identifier profile for usernames and emails (§9 "Identifiers"): RFC 8265
//! UsernameCaseMapped, through the `precis-profiles` implementation of the PRECIS framework.
//!
//! - A username or email must be a PRECIS IdentifierClass string: letters and digits of any
//!   script plus printable ASCII; no spaces, controls, bidi overrides (U+202E), zero-width or
//!   other format characters (U+200B), and no compatibility characters such as the Kelvin sign
//!   (U+212A, which looks like `K`) or fullwidth forms after width mapping. Right-to-left text
//!   must satisfy the bidi rule.
//! - The **display form** (what is stored and shown) is the UsernameCasePreserved enforcement:
//!   width-mapped and NFC-normalised, case kept (`café` typed as NFD is stored as NFC).
//! - The **comparison key** (what uniqueness and every lookup use) is the UsernameCaseMapped
//!   enforcement: the display form, lower-cased. Two accounts whose names look alike get the
//!   same key, so the second is refused; a hint is put through the same profile, so it finds only
//!   the user it names (a hint that is not a valid identifier names nobody).

use std::borrow::Cow;

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::{UsernameCaseMapped, UsernameCasePreserved};

/// Why a string is not a valid identifier, in words fit for an error message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("must not be empty")]
    Empty,
    #[error("contains a character that is not allowed (U+{0:04X})")]
    Character(u32),
    #[error("mixes right-to-left and left-to-right text in a way that is not allowed")]
    Direction,
}

fn precis_error(e: &precis_core::Error) -> IdentifierError {
    match e {
        precis_core::Error::BadCodepoint(info) => IdentifierError::Character(info.cp),
        _ => IdentifierError::Direction,
    }
}

/// The display form of a username or email: validated, width-mapped and NFC-normalised.
pub fn display_form(s: &str) -> Result<String, IdentifierError> {
    if s.is_empty() {
        return Err(IdentifierError::Empty);
    }
    UsernameCasePreserved::enforce(s)
        .map(Cow::into_owned)
        .map_err(|e| precis_error(&e))
}

/// The comparison key of a username or email (RFC 8265 UsernameCaseMapped).
pub fn comparison_key(s: &str) -> Result<String, IdentifierError> {
    if s.is_empty() {
        return Err(IdentifierError::Empty);
    }
    UsernameCaseMapped::enforce(s)
        .map(Cow::into_owned)
        .map_err(|e| precis_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_keep_their_case_and_compare_without_it() {
        assert_eq!(
            display_form("Alice.Smith+x@Example.com").unwrap(),
            "Alice.Smith+x@Example.com"
        );
        assert_eq!(
            comparison_key("Alice.Smith+x@Example.com").unwrap(),
            "alice.smith+x@example.com"
        );
        assert_eq!(
            comparison_key("KATE").unwrap(),
            comparison_key("kate").unwrap()
        );
    }

    #[test]
    fn composed_and_decomposed_forms_are_one_name() {
        let nfc = "caf\u{e9}";
        let nfd = "cafe\u{301}";
        assert_eq!(display_form(nfd).unwrap(), nfc);
        assert_eq!(comparison_key(nfd).unwrap(), comparison_key(nfc).unwrap());
        assert_eq!(comparison_key("CAF\u{c9}").unwrap(), "caf\u{e9}");
    }

    #[test]
    fn invisible_and_look_alike_characters_are_refused() {
        for (s, cp) in [
            ("evil\u{202e}gpj", 0x202E),
            ("ali\u{200b}ce", 0x200B),
            ("\u{212a}ate", 0x212A), // KELVIN SIGN
            ("tab\there", 0x9),
            ("a b", 0x20),
            ("bob\u{feff}", 0xFEFF),
        ] {
            assert_eq!(
                comparison_key(s),
                Err(IdentifierError::Character(cp)),
                "{s:?}"
            );
            assert_eq!(
                display_form(s),
                Err(IdentifierError::Character(cp)),
                "{s:?}"
            );
        }
        assert_eq!(comparison_key(""), Err(IdentifierError::Empty));
    }

    #[test]
    fn fullwidth_forms_are_mapped_to_their_ascii_look() {
        // Width mapping: FULLWIDTH LATIN SMALL LETTER A..
        assert_eq!(comparison_key("\u{ff41}lice").unwrap(), "alice");
    }

    #[test]
    fn other_scripts_are_welcome() {
        assert_eq!(comparison_key("Ζωή").unwrap(), "ζωή");
        assert!(display_form("山田太郎").is_ok());
        assert!(display_form("مريم").is_ok());
    }
}
