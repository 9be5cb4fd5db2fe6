//! The bearer tokens that guard the admin RPCs (dead letters, parked
//! events), each with a name that audit trails and logs record as the actor.
//!
//! Tokens are compared through their SHA-256 digests with a comparison
//! that looks at every byte of every configured token, so the time taken
//! says nothing about how much of a guess was right, or which token it was
//! near. With no token configured the RPCs are disabled
//! (PERMISSION_DENIED), never open.

use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The configured admin tokens, by name.
#[derive(Clone)]
pub struct AdminToken {
    tokens: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("AdminToken").field("names", &names).finish()
    }
}

/// A secret value (a token): its `Debug` never shows it, so a settings
/// struct printed whole shows none.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// `name:token,name:token` → pairs, when every entry is well formed: names
/// of 1-64 letters, digits, `.`, `_` or `-`, tokens of at least 16
/// characters.
pub fn parse_named_tokens(raw: &str) -> Option<Vec<(String, Secret)>> {
    raw.split(',')
        .map(|entry| {
            let (name, token) = entry.trim().split_once(':')?;
            let name_ok = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            (name_ok && token.len() >= 16).then(|| (name.to_owned(), Secret::from(token)))
        })
        .collect()
}

/// What an admin-token setting expects.
pub const NAMED_TOKENS_EXPECTED: &str = "name:token pairs, comma-separated: names of 1-64 letters, digits, '.', '_' or '-', tokens of at least 16 characters";

/// An operator's reason: required, one line, at most 512 characters.
pub fn required_reason(raw: &str) -> Result<String, String> {
    let reason = raw.trim();
    if reason.is_empty() {
        return Err("required: say why (it is kept with the decision)".to_owned());
    }
    if reason.chars().count() > 512 {
        return Err("at most 512 characters".to_owned());
    }
    if reason.chars().any(char::is_control) {
        return Err("one line of text, without control characters".to_owned());
    }
    Ok(reason.to_owned())
}

impl AdminToken {
    /// `(name, token)` pairs.
    pub fn new<'a>(tokens: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(name, token)| (name.to_owned(), digest(token)))
                .collect(),
        }
    }

    /// Lets the call through only with `authorization: Bearer <token>` of
    /// a configured token; the token's name.
    pub fn check(&self, metadata: &MetadataMap) -> Result<String, Status> {
        if self.tokens.is_empty() {
            return Err(Status::permission_denied(
                "the admin API is disabled: start the service with an admin token",
            ));
        }
        let presented = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let presented = digest(presented.trim());
        let mut matched = None;
        for (name, expected) in &self.tokens {
            if constant_time_eq(&presented, expected) {
                matched = Some(name);
            }
        }
        matched
            .cloned()
            .ok_or_else(|| Status::unauthenticated("invalid admin token"))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().unwrap());
        metadata
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = AdminToken::new([
            ("admin", "s3cret-s3cret-s3cret"),
            ("alice", "alice-token-0123456789"),
        ]);
        assert_eq!(
            token
                .check(&with_authorization("Bearer s3cret-s3cret-s3cret"))
                .unwrap(),
            "admin"
        );
        assert_eq!(
            token
                .check(&with_authorization("Bearer alice-token-0123456789"))
                .unwrap(),
            "alice"
        );
        for wrong in [
            "Bearer s3cret-s3cret-s3creT",
            "Bearer ",
            "s3cret-s3cret-s3cret",
            "Basic x",
        ] {
            assert_eq!(
                token.check(&with_authorization(wrong)).unwrap_err().code(),
                tonic::Code::Unauthenticated,
                "{wrong}"
            );
        }
        assert_eq!(
            token.check(&MetadataMap::new()).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let disabled = AdminToken::new([]);
        assert_eq!(
            disabled
                .check(&with_authorization("Bearer anything"))
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
    }
}
