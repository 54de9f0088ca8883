//! What a tap point reports: one [`TapEvent`] per thing that happened on a
//! shard, built only while the shard is watched (see [`super::Tap`]).
//! Events are plain owned values (`Send`): they cross to the shard that
//! serves the console inside a [`super::TapPart`].

use crate::apps::AppIdx;
use crate::socket_id::SocketId;

/// The longest excerpt of an event's `data` a tap keeps, in bytes (cut at
/// a character boundary); `bytes` always gives the full size.
pub const DATA_EXCERPT_BYTES: usize = 1024;

/// One thing that happened, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapEvent {
    /// Microseconds since the Unix epoch (stamped by the tap).
    pub at_us: u64,
    /// The shard it happened on (stamped by the tap).
    pub shard: u16,
    pub app: AppIdx,
    /// The channel it concerns, for single-channel events.
    pub channel: Option<Box<str>>,
    /// The connection it concerns; for an API message, the excluded one.
    pub socket: Option<SocketId>,
    pub what: What,
}

/// The kinds of event and what each one carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    ConnectionOpened,
    /// `code`: the close code sent or received (1006 when the socket went
    /// away without a close frame).
    ConnectionClosed {
        code: u16,
    },
    Subscribed,
    Unsubscribed,
    /// The node-wide subscriber count went from 0 to more.
    ChannelOccupied,
    /// The node-wide subscriber count went to 0.
    ChannelVacated,
    MemberAdded {
        user_id: Box<str>,
    },
    MemberRemoved {
        user_id: Box<str>,
    },
    /// An event published through the HTTP API (or the console's Event Creator).
    ApiMessage {
        event: Box<str>,
        channels: Vec<Box<str>>,
        bytes: usize,
        data: Box<str>,
    },
    /// A `client-` event relayed from a connection.
    ClientEvent {
        event: Box<str>,
        bytes: usize,
        data: Box<str>,
        user_id: Option<Box<str>>,
    },
}

impl What {
    /// The kind's name, as the console filters and shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            What::ConnectionOpened => "connection_opened",
            What::ConnectionClosed { .. } => "connection_closed",
            What::Subscribed => "subscribed",
            What::Unsubscribed => "unsubscribed",
            What::ChannelOccupied => "channel_occupied",
            What::ChannelVacated => "channel_vacated",
            What::MemberAdded { .. } => "member_added",
            What::MemberRemoved { .. } => "member_removed",
            What::ApiMessage { .. } => "api_message",
            What::ClientEvent { .. } => "client_event",
        }
    }
}

impl TapEvent {
    /// An event of `app`; the tap stamps the time and the shard.
    pub fn new(app: AppIdx, what: What) -> TapEvent {
        TapEvent {
            at_us: 0,
            shard: 0,
            app,
            channel: None,
            socket: None,
            what,
        }
    }

    pub fn on(mut self, channel: &str) -> TapEvent {
        self.channel = Some(channel.into());
        self
    }

    pub fn socket(mut self, socket: Option<SocketId>) -> TapEvent {
        self.socket = socket;
        self
    }

    /// The event name, for API messages and client events.
    pub fn event_name(&self) -> Option<&str> {
        match &self.what {
            What::ApiMessage { event, .. } | What::ClientEvent { event, .. } => Some(event),
            _ => None,
        }
    }

    /// Every channel the event concerns.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        let many: &[Box<str>] = match &self.what {
            What::ApiMessage { channels, .. } => channels,
            _ => &[],
        };
        self.channel
            .as_deref()
            .into_iter()
            .chain(many.iter().map(|c| &**c))
    }
}

/// At most [`DATA_EXCERPT_BYTES`] of `data`, cut at a character boundary.
pub fn excerpt(data: &str) -> Box<str> {
    if data.len() <= DATA_EXCERPT_BYTES {
        return data.into();
    }
    let mut end = DATA_EXCERPT_BYTES;
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    data[..end].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_at_a_character_boundary() {
        assert_eq!(&*excerpt("short"), "short");
        let long = "é".repeat(DATA_EXCERPT_BYTES); // 2 bytes each
        let cut = excerpt(&long);
        assert_eq!(cut.len(), DATA_EXCERPT_BYTES);
        let odd = format!("a{long}");
        assert_eq!(excerpt(&odd).len(), DATA_EXCERPT_BYTES - 1);
    }

    #[test]
    fn channels_lists_the_channel_and_an_api_message_s_channels() {
        let e = TapEvent::new(AppIdx(0), What::Subscribed).on("a");
        assert_eq!(e.channels().collect::<Vec<_>>(), ["a"]);
        let api = TapEvent::new(
            AppIdx(0),
            What::ApiMessage {
                event: "e".into(),
                channels: vec!["x".into(), "y".into()],
                bytes: 2,
                data: "{}".into(),
            },
        );
        assert_eq!(api.channels().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(api.event_name(), Some("e"));
    }
}
