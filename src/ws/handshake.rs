//! The WebSocket upgrade on `GET /app/{key}?protocol=7`: checks the request,
//! decides whether the Pusher connection is accepted or refused (and with
//! which code), and builds the `101 Switching Protocols` answer.

use crate::apps::{AppIdx, AppRegistry};
use crate::errors::ClientError;

/// What a request head says about an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub app_key: String,
    pub protocol: Option<String>,
    pub ws_key: String,
}

/// Why an upgrade request is not a valid WebSocket handshake (answered with HTTP 400).
pub fn check_headers(
    method: &str,
    version_13: bool,
    has_upgrade: bool,
    ws_key: Option<&str>,
) -> Result<(), &'static str> {
    if method != "GET" {
        return Err("WebSocket upgrades must use GET");
    }
    if !has_upgrade {
        return Err("expected Upgrade: websocket and Connection: upgrade");
    }
    if !version_13 {
        return Err("unsupported Sec-WebSocket-Version: use 13");
    }
    match ws_key {
        Some(k) if !k.is_empty() => Ok(()),
        _ => Err("missing Sec-WebSocket-Key"),
    }
}

/// Decides whether the Pusher connection may open, before any quota check.
pub fn admit(apps: &AppRegistry, upgrade: &Upgrade) -> Result<AppIdx, ClientError> {
    let Some(idx) = apps.by_key(&upgrade.app_key) else {
        return Err(ClientError::UnknownApp(upgrade.app_key.clone()));
    };
    if !apps.get(idx).enabled {
        return Err(ClientError::AppDisabled);
    }
    match upgrade.protocol.as_deref() {
        None => Err(ClientError::NoProtocol),
        Some(p) => match p.parse::<u32>() {
            Ok(5..=7) => Ok(idx),
            Ok(_) => Err(ClientError::BadProtocol(p.to_string())),
            Err(_) => Err(ClientError::BadVersionFormat(p.to_string())),
        },
    }
}

/// The `101 Switching Protocols` response for a client's `Sec-WebSocket-Key`.
pub fn accept_response(ws_key: &str) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(ws_key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::App;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        let r = String::from_utf8(accept_response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(
            r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{r}"
        );
    }

    #[test]
    fn admission_codes() {
        let mut disabled = App::new("2".into(), "off".into(), "s".into());
        disabled.enabled = false;
        let apps = AppRegistry::new(vec![
            App::new("1".into(), "key".into(), "s".into()),
            disabled,
        ]);
        let up = |key: &str, p: Option<&str>| Upgrade {
            app_key: key.into(),
            protocol: p.map(Into::into),
            ws_key: "k".into(),
        };
        assert_eq!(admit(&apps, &up("key", Some("7"))), Ok(AppIdx(0)));
        assert_eq!(admit(&apps, &up("key", Some("5"))), Ok(AppIdx(0)));
        assert_eq!(
            admit(&apps, &up("nope", Some("7"))).unwrap_err().code(),
            4001
        );
        assert_eq!(
            admit(&apps, &up("off", Some("7"))).unwrap_err().code(),
            4003
        );
        assert_eq!(admit(&apps, &up("key", None)).unwrap_err().code(), 4008);
        assert_eq!(
            admit(&apps, &up("key", Some("4"))).unwrap_err().code(),
            4007
        );
        assert_eq!(
            admit(&apps, &up("key", Some("8"))).unwrap_err().code(),
            4007
        );
        assert_eq!(
            admit(&apps, &up("key", Some("x"))).unwrap_err().code(),
            4006
        );
    }
}
