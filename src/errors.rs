//! Typed errors, one enum per layer, and the one place where a client's
//! mistake becomes a Pusher error code or an HTTP status.
//!
//! - [`ConfigError`] and [`StartupError`]: the process cannot start; printed and exit 1.
//!   [`FeatureMissing`] names the cargo feature a setting needs when this
//!   build was compiled without it.
//! - [`ApiError`]: an HTTP API request was refused; [`ApiError::status`] maps it.
//! - [`ClientError`]: a WebSocket client sent something the protocol refuses;
//!   [`ClientError::code`] maps it to the Pusher code sent in `pusher:error`
//!   and, where [`ClientError::closes`] says so, in the close frame.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file: {0}")]
    Toml(String),
    #[error("invalid value for `{key}`: {why}")]
    Invalid { key: String, why: String },
}

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Environment(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Cluster(String),
    #[error("shard on CPU {cpu} failed to start: {why}")]
    Shard { cpu: usize, why: String },
    /// Another process listens on the address: the server would otherwise
    /// share the port with it (SO_REUSEPORT) and get only some connections.
    #[error(
        "cannot listen on {addr}: another process is already listening there; \
         stop it or choose another port ({setting})"
    )]
    PortTaken { addr: String, setting: &'static str },
}

impl StartupError {
    /// A failed bind of `addr` (configured by `setting`), with the case of
    /// an address another process listens on named as such.
    pub fn bind(addr: String, setting: &'static str, source: std::io::Error) -> StartupError {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            StartupError::PortTaken { addr, setting }
        } else {
            StartupError::Bind { addr, source }
        }
    }
}

/// A setting needs a part of the server this build was compiled without (a
/// cargo feature that is off): refused at start-up, never ignored.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("this build has no {what} support (cargo feature `{feature}`)")]
pub struct FeatureMissing {
    pub what: &'static str,
    pub feature: &'static str,
}

impl FeatureMissing {
    pub const REDIS: FeatureMissing = FeatureMissing {
        what: "Redis",
        feature: "redis",
    };
    pub const NATS: FeatureMissing = FeatureMissing {
        what: "NATS",
        feature: "nats",
    };
    pub const POSTGRES: FeatureMissing = FeatureMissing {
        what: "PostgreSQL",
        feature: "postgres",
    };
    pub const MYSQL: FeatureMissing = FeatureMissing {
        what: "MySQL",
        feature: "mysql",
    };
    pub const WEBHOOKS: FeatureMissing = FeatureMissing {
        what: "webhook",
        feature: "webhooks",
    };
}

/// Why an HTTP API request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    HeadTooLarge(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::HeadTooLarge(_) => 431,
            ApiError::Timeout(_) => 408,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Unavailable(_) => 503,
        }
    }
}

/// Why a WebSocket client's connection or message was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("App key {0} does not exist")]
    UnknownApp(String),
    #[error("App is disabled")]
    AppDisabled,
    #[error("App is over its connection quota")]
    OverQuota,
    #[error("Over capacity: the server is at its connection limit, reconnect later")]
    OverCapacity,
    #[error(
        "Over capacity: this address already has {0} connections, the most \
         server.limits.max_connections_per_ip allows; reconnect later"
    )]
    OverIpLimit(u32),
    #[error("Protocol version not supplied: connect with ?protocol=7")]
    NoProtocol,
    #[error("Unsupported protocol version {0}: this server speaks 5 to 7")]
    BadProtocol(String),
    #[error("Invalid version string format: protocol={0} is not a number")]
    BadVersionFormat(String),
    #[error("Server is shutting down, reconnect")]
    ShuttingDown,
    #[error("Pong reply not received within {0} seconds")]
    PongTimeout(u32),
    #[error("Slow consumer: more than {0} bytes queued, reconnect later")]
    SlowConsumer(usize),
    #[error(
        "Slow consumer: the server's write queues are full and this connection had \
         more than {0} bytes queued, reconnect later"
    )]
    SlowConsumerOverBudget(usize),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadMessage(String),
}

impl ClientError {
    /// The Pusher error code (pusher-websockets-protocol, "Error Codes").
    pub fn code(&self) -> u16 {
        match self {
            ClientError::UnknownApp(_) => 4001,
            ClientError::AppDisabled => 4003,
            ClientError::OverQuota => 4004,
            ClientError::BadVersionFormat(_) => 4006,
            ClientError::BadProtocol(_) => 4007,
            ClientError::NoProtocol => 4008,
            ClientError::Unauthorized(_) => 4009,
            ClientError::SlowConsumer(_)
            | ClientError::SlowConsumerOverBudget(_)
            | ClientError::OverCapacity
            | ClientError::OverIpLimit(_) => 4100,
            ClientError::ShuttingDown => 4200,
            ClientError::PongTimeout(_) => 4201,
            ClientError::BadMessage(_) => 4000,
        }
    }

    /// Whether the connection is closed (with [`ClientError::code`]) after the error.
    pub fn closes(&self) -> bool {
        !matches!(self, ClientError::BadMessage(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_feature_is_named() {
        assert_eq!(
            FeatureMissing::REDIS.to_string(),
            "this build has no Redis support (cargo feature `redis`)"
        );
        assert_eq!(
            FeatureMissing::NATS.to_string(),
            "this build has no NATS support (cargo feature `nats`)"
        );
        assert_eq!(
            FeatureMissing::WEBHOOKS.to_string(),
            "this build has no webhook support (cargo feature `webhooks`)"
        );
    }

    #[test]
    fn close_codes_follow_pusher() {
        assert_eq!(ClientError::UnknownApp("x".into()).code(), 4001);
        assert_eq!(ClientError::AppDisabled.code(), 4003);
        assert_eq!(ClientError::OverQuota.code(), 4004);
        assert_eq!(ClientError::BadProtocol("4".into()).code(), 4007);
        assert_eq!(ClientError::NoProtocol.code(), 4008);
        assert_eq!(ClientError::SlowConsumer(1).code(), 4100);
        assert_eq!(ClientError::OverCapacity.code(), 4100);
        assert_eq!(ClientError::OverIpLimit(3).code(), 4100);
        assert!(ClientError::OverIpLimit(3).closes());
        assert!(ClientError::OverIpLimit(3).to_string().contains(
            "already has 3 connections, the most server.limits.max_connections_per_ip allows"
        ));
        assert_eq!(ClientError::ShuttingDown.code(), 4200);
        assert_eq!(ClientError::PongTimeout(30).code(), 4201);
        assert!(!ClientError::BadMessage("x".into()).closes());
        assert!(ClientError::OverQuota.closes());
    }

    #[test]
    fn api_statuses() {
        assert_eq!(ApiError::BadRequest(String::new()).status(), 400);
        assert_eq!(ApiError::Unauthorized(String::new()).status(), 401);
        assert_eq!(ApiError::Forbidden(String::new()).status(), 403);
        assert_eq!(ApiError::NotFound(String::new()).status(), 404);
        assert_eq!(ApiError::MethodNotAllowed(String::new()).status(), 405);
        assert_eq!(ApiError::PayloadTooLarge(String::new()).status(), 413);
        assert_eq!(ApiError::TooManyRequests(String::new()).status(), 429);
    }
}
