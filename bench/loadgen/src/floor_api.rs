//! What the two floor servers (`floor` on epoll, `floor-glommio` on glommio)
//! share: the address they listen on and the trigger bodies they parse, so
//! the two measure the same work.

#![allow(dead_code)] // each binary reads the parts it needs

use serde::Deserialize;
use std::borrow::Cow;
use std::net::SocketAddr;

/// `--host` and `--port`.
#[derive(clap::Args)]
pub struct Listen {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 6001)]
    pub port: u16,
}

impl Listen {
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        format!("{}:{}", self.host, self.port)
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))
    }
}

/// One event of `POST /apps/{id}/events` (or of a batch).
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub channels: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
}

/// The body of `POST /apps/{id}/batch_events`.
#[derive(Deserialize)]
pub struct Batch<'a> {
    #[serde(borrow)]
    pub batch: Vec<Event<'a>>,
}
