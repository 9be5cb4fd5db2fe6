//! The bearer tokens that guard the dead-letter RPCs, each with a name that
//! the audit trail records as the actor.
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
                "the dead-letter API is disabled: start the processor with PROCESSOR_ADMIN_TOKEN",
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
