//! What the link checks in a message from another node before any shard
//! sees it.
//!
//! A message that passed the signature and the sender checks (`seal`,
//! `peers`) comes from a node holding the secret; it is still held to the
//! rules its contents would meet arriving from a client or the HTTP API,
//! so one misbehaving or outdated node cannot put into this node what its
//! own clients could not: channel names as a subscribe or trigger checks
//! them, presence members as `channel_data` is checked (their `user_info`
//! is spliced into frames as it is, so it must be JSON), frames that are
//! one unmasked text frame no larger than the app's largest event could
//! make, user ids and counts within their limits. The checks run on the
//! link thread, once per message, not on every shard.

use super::inbound::Inbound;
use super::peers::Refusal;
use super::wire::{NodeMsg, RemoteAsk, RemotePart};
use crate::apps::{AppIdx, AppRegistry};
use crate::channel_name::{validate_name, ChannelClass, ChannelKind};
use crate::member::{check_announced, MAX_USER_ID_LEN};
use crate::ws::frame::Frame;

/// Subscribers of one channel a node may report (in a query answer or
/// its occupancy).
pub const MAX_REPORTED_COUNT: u32 = 1 << 24;
/// Connections of one app a node may report in a query answer.
pub const MAX_REPORTED_CONNECTIONS: u32 = 1 << 26;
/// Bytes a frame's payload may take beyond its event's data: the event
/// name, the channel, the JSON around them, and escaping (which can make
/// data up to 6 times longer, `\u0000` for each control byte).
const FRAME_OVERHEAD: usize = 4096;

type Refused = (Refusal, String);

fn invalid(why: String) -> Refused {
    (Refusal::Invalid, why)
}

/// The checked [`Inbound`] for `msg` from `node`; `Ok(None)` for a
/// heartbeat; `Err` with the reason and what was wrong.
pub fn to_inbound(apps: &AppRegistry, node: u64, msg: NodeMsg) -> Result<Option<Inbound>, Refused> {
    let app_of = |id: &str| {
        apps.by_id(id)
            .ok_or_else(|| (Refusal::UnknownApp, format!("app {id:?}")))
    };
    let channel = |app: AppIdx, name: &str| -> Result<(), Refused> {
        let max = apps.get(app).limits.max_channel_name_length;
        validate_name(name, max).map_err(|e| invalid(format!("channel {name:?}: {e}")))
    };
    let presence = |app: AppIdx, name: &str| -> Result<(), Refused> {
        channel(app, name)?;
        match ChannelClass::of(name).kind {
            ChannelKind::Presence => Ok(()),
            _ => Err(invalid(format!(
                "member of {name:?}, not a presence channel"
            ))),
        }
    };
    let user = |user_id: &str| -> Result<(), Refused> {
        match !user_id.is_empty() && user_id.len() <= MAX_USER_ID_LEN {
            true => Ok(()),
            false => Err(invalid(format!("user id of {} bytes", user_id.len()))),
        }
    };
    Ok(Some(match msg {
        // The link acts on these itself (liveness and full syncs).
        NodeMsg::Heartbeat
        | NodeMsg::Hello
        | NodeMsg::SyncStart { .. }
        | NodeMsg::SyncEnd { .. }
        | NodeMsg::Resync { .. } => return Ok(None),
        NodeMsg::Query {
            id,
            shard,
            app,
            ask,
        } => {
            let app = app_of(&app)?;
            match &ask {
                RemoteAsk::Channel(name) => channel(app, name)?,
                RemoteAsk::Channels(prefix) if !prefix.is_empty() => {
                    // A prefix is a name cut short: same characters, length.
                    channel(app, prefix)?
                }
                RemoteAsk::Channels(_) | RemoteAsk::Connections => {}
            }
            Inbound::Query {
                from: node,
                id,
                shard,
                app,
                ask,
            }
        }
        NodeMsg::Answer { id, part, .. } => {
            check_answer(apps, &part)?;
            Inbound::Answer { id, part }
        }
        NodeMsg::MemberJoined {
            app,
            channel: name,
            user_id,
            user_info,
            sync,
        } => {
            let app = app_of(&app)?;
            presence(app, &name)?;
            check_announced(&user_id, &user_info).map_err(invalid)?;
            Inbound::Member {
                node,
                app,
                channel: name,
                user_id,
                joined: Some(user_info),
                sync,
            }
        }
        NodeMsg::MemberLeft {
            app,
            channel: name,
            user_id,
        } => {
            let app = app_of(&app)?;
            presence(app, &name)?;
            user(&user_id)?;
            Inbound::Member {
                node,
                app,
                channel: name,
                user_id,
                joined: None,
                sync: false,
            }
        }
        NodeMsg::Occupancy {
            app,
            channel: name,
            count,
            sync,
        } => {
            let app = app_of(&app)?;
            channel(app, &name)?;
            if count > MAX_REPORTED_COUNT {
                return Err(invalid(format!("{count} subscribers of {name:?}")));
            }
            Inbound::Occupancy {
                node,
                app,
                channel: name,
                count,
                sync,
            }
        }
        NodeMsg::UserOnline {
            app,
            user_id,
            online,
            sync,
        } => {
            let app = app_of(&app)?;
            user(&user_id)?;
            Inbound::UserOnline {
                node,
                app,
                user_id,
                online,
                sync,
            }
        }
        NodeMsg::TerminateUser { app, user_id } => {
            let app = app_of(&app)?;
            user(&user_id)?;
            Inbound::TerminateUser { app, user_id }
        }
        NodeMsg::Publish {
            app,
            except,
            frames,
        } => {
            let app = app_of(&app)?;
            let limits = &apps.get(app).limits;
            let max_frame = limits.max_event_payload_bytes * 6 + FRAME_OVERHEAD;
            if frames.len() > limits.max_batch_size.max(limits.max_channels_per_event) {
                return Err(invalid(format!(
                    "{} frames in one publication",
                    frames.len()
                )));
            }
            let mut checked = Vec::with_capacity(frames.len());
            for (name, bytes) in frames {
                channel(app, &name)?;
                if bytes.len() > max_frame {
                    return Err(invalid(format!(
                        "a frame of {} bytes for {name:?} (the app's events make at most {max_frame})",
                        bytes.len()
                    )));
                }
                let frame = Frame::from_encoded(bytes)
                    .ok_or_else(|| invalid(format!("a malformed frame for {name:?}")))?;
                checked.push((name, frame));
            }
            Inbound::Publish {
                app,
                except,
                frames: checked,
            }
        }
    }))
}

/// A query answer's part: counts within bounds, channel names and the
/// cached event's data of a sane size.
fn check_answer(apps: &AppRegistry, part: &RemotePart) -> Result<(), Refused> {
    if part.connections > MAX_REPORTED_CONNECTIONS {
        return Err(invalid(format!(
            "answer counts {} connections",
            part.connections
        )));
    }
    // The answer does not say its app (the asking shard knows): the
    // longest name any app allows.
    let longest = apps.longest_channel_name();
    for (name, n) in &part.subscriptions {
        if validate_name(name, longest).is_err() {
            return Err(invalid(format!("answer names channel {name:?}")));
        }
        if *n > MAX_REPORTED_COUNT {
            return Err(invalid(format!(
                "answer counts {n} subscribers of {name:?}"
            )));
        }
    }
    Ok(())
}
