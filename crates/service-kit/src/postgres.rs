//! What a `DATABASE_URL` may say about TLS, checked before the first
//! connection so a typo is a clear start-up error, not a refused handshake.
//!
//! The driver (sqlx over rustls) reads the libpq parameters itself:
//! `sslmode` (`disable`, `allow`, `prefer` — the default —, `require`,
//! `verify-ca`, `verify-full`), `sslrootcert` (the CA; without it the
//! public web roots), `sslcert` and `sslkey` (a client certificate).

const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
const FILE_PARAMETERS: [&str; 3] = ["sslrootcert", "sslcert", "sslkey"];

/// `Ok` for a `postgres://` URL whose TLS parameters can be used; else
/// what was expected.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("a postgres:// URL".to_owned());
    }
    let parameters = query_parameters(url);
    let value = |key: &str| {
        parameters
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    if let Some(mode) = value("sslmode")
        && !SSL_MODES.contains(&mode)
    {
        return Err(format!(
            "a postgres:// URL whose sslmode is one of {} (not {mode:?})",
            SSL_MODES.join(", ")
        ));
    }
    for parameter in FILE_PARAMETERS {
        if let Some(path) = value(parameter)
            && let Err(err) = std::fs::File::open(path)
        {
            return Err(format!(
                "a postgres:// URL whose {parameter} names a readable file ({path}: {err})"
            ));
        }
    }
    if value("sslcert").is_some() != value("sslkey").is_some() {
        return Err("a postgres:// URL with both sslcert and sslkey, or neither".to_owned());
    }
    Ok(())
}

/// The `key=value` pairs after `?`, percent-decoded.
fn query_parameters(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (percent_decoded(key), percent_decoded(value)))
        .collect()
}

/// `%XX` escapes (and `+`) decoded.
pub fn percent_decoded(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| raw.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(if bytes[at] == b'+' { b' ' } else { bytes[at] });
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_checked() {
        assert!(check_url("postgres://u@h/db").is_ok());
        assert!(check_url("postgresql://u@h/db?sslmode=verify-full").is_ok());
        assert!(check_url("mysql://u@h/db").is_err());
        let err = check_url("postgres://u@h/db?sslmode=verify_full").unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
        let err = check_url("postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent/ca.crt")
            .unwrap_err();
        assert!(err.contains("sslrootcert"), "{err}");
        let err = check_url("postgres://u@h/db?sslcert=%2Fetc%2Fhostname").unwrap_err();
        assert!(err.contains("sslkey"), "{err}");
        assert!(
            check_url("postgres://u@h/db?sslcert=%2Fetc%2Fhostname&sslkey=/etc/hostname").is_ok()
        );
    }
}
