//! User authentication: `pusher:signin` with a signature over
//! `socket_id::user::user_data`, the user's online status on its owner
//! shard, and the watchlist of the users it wants to hear about.

use super::shard::Shard;
use super::shard_msg::ShardMsg;
use crate::auth::verify_client_auth;
use crate::pusher::conns::ConnKey;
use crate::pusher::messages;
use crate::pusher::owned::owner_of;
use crate::pusher::users::MAX_WATCHLIST;
use crate::socket_id::SocketId;
use simd_json::prelude::*;
use std::collections::HashMap;

const UNAUTHORIZED: u16 = 4009;
const WATCHLIST_LIMIT: u16 = 4302;

/// The parts of `user_data` the server uses.
#[derive(Debug, PartialEq, Eq)]
pub struct UserData {
    pub id: Box<str>,
    pub watchlist: Vec<Box<str>>,
    /// Whether the watchlist was cut to [`MAX_WATCHLIST`].
    pub truncated: bool,
}

/// Parses `user_data`: a JSON object with a non-empty string `id` and an
/// optional `watchlist` of user ids.
pub fn parse_user_data(user_data: &str) -> Result<UserData, String> {
    let mut bytes = user_data.as_bytes().to_vec();
    let value =
        crate::json::parse(&mut bytes).map_err(|e| format!("user_data is not valid JSON: {e}"))?;
    if value.as_object().is_none() {
        return Err("user_data must be a JSON object".into());
    }
    let id = match value.get("id") {
        Some(v) => v.as_str().ok_or("user_data.id must be a string")?,
        None => return Err("user_data.id is required".into()),
    };
    if id.is_empty() {
        return Err("user_data.id is empty".into());
    }
    let mut watchlist: Vec<Box<str>> = Vec::new();
    if let Some(list) = value.get("watchlist") {
        let list = list
            .as_array()
            .ok_or("user_data.watchlist must be an array of user ids")?;
        for v in list {
            let id = match v.as_str() {
                Some(s) => s.to_string(),
                None if v.is_i64() || v.is_u64() => v.encode(),
                None => return Err("user_data.watchlist must hold user ids (strings)".into()),
            };
            if !watchlist.iter().any(|w| **w == *id) {
                watchlist.push(id.into());
                if watchlist.len() > MAX_WATCHLIST {
                    break; // enough to know it is over the limit
                }
            }
        }
    }
    let truncated = watchlist.len() > MAX_WATCHLIST;
    watchlist.truncate(MAX_WATCHLIST);
    Ok(UserData {
        id: id.into(),
        watchlist,
        truncated,
    })
}

/// Handles `pusher:signin`.
pub fn signin(
    shard: &Shard,
    key: ConnKey,
    socket: SocketId,
    auth: Option<&str>,
    user_data: Option<&str>,
) {
    let refuse = |why: &str| {
        shard.conns.borrow_mut().reply(
            key,
            &messages::error(Some(UNAUTHORIZED), &format!("Sign-in refused: {why}")),
        )
    };
    let (Some(auth), Some(user_data)) = (auth, user_data) else {
        return refuse("pusher:signin needs data.auth and data.user_data");
    };
    let Some(app) = shard.conns.borrow().get(key).map(|c| c.app) else {
        return;
    };
    if !verify_client_auth(
        &shard.apps.get(app),
        auth,
        &format!("{socket}::user::{user_data}"),
    ) {
        return refuse("invalid signature: check the app key and secret your auth endpoint uses");
    }
    let data = match parse_user_data(user_data) {
        Ok(d) => d,
        Err(why) => return refuse(&why),
    };
    {
        let mut conns = shard.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        if conn.user_id().is_some() {
            drop(conns);
            return refuse("this connection is already signed in");
        }
        let extra = conn.extra_mut();
        extra.watchlist = data.watchlist.clone();
        extra.sign_in_by = None;
        conns.sign_in(key, &data.id);
        conns.reply(key, &messages::signin_success(user_data));
        if data.truncated {
            let message = format!("Watchlist has more than {MAX_WATCHLIST} ids: only the first {MAX_WATCHLIST} are watched");
            conns.reply(key, &messages::error(Some(WATCHLIST_LIMIT), &message));
        }
    }
    shard.post(
        owner_of(app, &data.id, shard.count),
        ShardMsg::UserPresence {
            app,
            user_id: data.id,
            online: true,
        },
    );
    post_watch(shard, app, socket, data.watchlist, true);
}

/// Tells the watched users' owners to add or drop `watcher`.
pub fn post_watch(
    shard: &Shard,
    app: crate::apps::AppIdx,
    watcher: SocketId,
    users: Vec<Box<str>>,
    watch: bool,
) {
    let mut by_owner: HashMap<usize, Vec<Box<str>>> = HashMap::new();
    for user in users {
        by_owner
            .entry(owner_of(app, &user, shard.count))
            .or_default()
            .push(user);
    }
    for (owner, users) in by_owner {
        shard.post(
            owner,
            ShardMsg::Watch {
                app,
                watcher,
                users,
                watch,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_is_checked() {
        let d = parse_user_data(r#"{"id":"42","user_info":{},"watchlist":["7",8,"7"]}"#).unwrap();
        assert_eq!(&*d.id, "42");
        assert_eq!(d.watchlist, vec![Box::from("7"), Box::from("8")]);
        assert!(!d.truncated);
        assert!(parse_user_data("{}")
            .unwrap_err()
            .contains("id is required"));
        assert!(parse_user_data(r#"{"id":""}"#)
            .unwrap_err()
            .contains("empty"));
        assert!(parse_user_data(r#"{"id":5}"#)
            .unwrap_err()
            .contains("string"));
        assert!(parse_user_data("nope").unwrap_err().contains("JSON"));
        let many: Vec<String> = (0..150).map(|i| format!("\"u{i}\"")).collect();
        let d =
            parse_user_data(&format!(r#"{{"id":"1","watchlist":[{}]}}"#, many.join(","))).unwrap();
        assert_eq!(d.watchlist.len(), 100);
        assert!(d.truncated);
    }
}
