//! Connecting to NATS as every Ordo process does. `NATS_URL` names one
//! server or several, comma-separated (`nats://a:4222,nats://b:4222`): the
//! client starts with any that answers and learns the rest of a cluster
//! from it, so a list of seeds survives any one node being down.

use async_nats::{Client, ConnectError, ConnectOptions, ServerAddr};

/// The servers of a `NATS_URL`, each parsed; the error names the first
/// that is not a NATS URL.
pub fn servers(url_list: &str) -> Result<Vec<ServerAddr>, String> {
    url_list
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return Err(format!("{url:?} is not a nats:// or tls:// URL"));
            }
            url.parse::<ServerAddr>()
                .map_err(|err| format!("{url:?} is not a NATS server URL: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|servers| {
            if servers.is_empty() {
                Err("no NATS server URL".to_owned())
            } else {
                Ok(servers)
            }
        })
}

/// Connects to the servers of `url_list` with `options`.
pub async fn connect(url_list: &str, options: ConnectOptions) -> Result<Client, ConnectError> {
    let servers = servers(url_list)
        .map_err(|why| ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, why))?;
    options.connect(servers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_servers_is_several_servers() {
        let parsed =
            servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223,tls://nats.example:4222")
                .unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[1].port(), 4223);
        assert!(servers("nats://127.0.0.1:4222,not a url:x").is_err());
        assert!(servers(" , ").is_err());
        assert!(servers("0").is_err());
        assert!(
            servers("127.0.0.1:4222").is_err(),
            "the scheme says what is meant"
        );
    }
}
