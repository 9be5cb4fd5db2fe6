//! The bearer token that guards the dead-letter RPCs.
//!
//! Tokens are compared through their SHA-256 digests with a comparison
//! that looks at every byte, so the time taken says nothing about how much
//! of a guess was right. With no token configured the RPCs are disabled
//! (PERMISSION_DENIED), never open.

use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The configured admin token, if any.
#[derive(Clone)]
pub struct AdminToken {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("configured", &self.digest.is_some())
            .finish()
    }
}

impl AdminToken {
    pub fn new(token: Option<&str>) -> Self {
        Self {
            digest: token.map(digest),
        }
    }

    /// Lets the call through only with `authorization: Bearer <token>`.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(expected) = &self.digest else {
            return Err(Status::permission_denied(
                "the dead-letter API is disabled: start the processor with PROCESSOR_ADMIN_TOKEN",
            ));
        };
        let presented = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        if constant_time_eq(&digest(presented.trim()), expected) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid admin token"))
        }
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
        let token = AdminToken::new(Some("s3cret-s3cret-s3cret"));
        assert!(
            token
                .check(&with_authorization("Bearer s3cret-s3cret-s3cret"))
                .is_ok()
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
        let disabled = AdminToken::new(None);
        assert_eq!(
            disabled
                .check(&with_authorization("Bearer anything"))
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
    }
}
