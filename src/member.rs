//! A presence member (user id and user info) and the rules for one,
//! shared by everything that receives members: the protocol (a client's
//! `channel_data`) and the cluster link (members other nodes announce),
//! so a member from another node is held to the same rules as a client's.

/// Longest `user_id` accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;
/// Largest `user_info`, as JSON text.
pub const MAX_USER_INFO_BYTES: usize = 1024;

/// A presence member as a subscriber declares it in `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: Box<str>,
    /// `user_info` as JSON text; `{}` when the client sent none.
    pub user_info: Box<str>,
}

/// Parses `channel_data`: `{"user_id": string or number, "user_info": any}`.
pub fn parse_channel_data(channel_data: &str) -> Result<Member, String> {
    let mut bytes = channel_data.as_bytes().to_vec();
    let value = crate::json::parse(&mut bytes)
        .map_err(|e| format!("channel_data is not valid JSON: {e}"))?;
    use simd_json::prelude::*;
    if value.as_object().is_none() {
        return Err("channel_data must be a JSON object".into());
    }
    let user_id = match value.get("user_id") {
        Some(v) if v.is_str() => v.as_str().unwrap_or_default().to_string(),
        Some(v) if v.is_i64() || v.is_u64() => v.encode(),
        Some(v) if v.is_f64() => v.encode(),
        Some(_) => return Err("channel_data.user_id must be a string or a number".into()),
        None => return Err("channel_data.user_id is required".into()),
    };
    if user_id.is_empty() {
        return Err("channel_data.user_id is empty".into());
    }
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(format!(
            "channel_data.user_id is longer than {MAX_USER_ID_LEN} characters"
        ));
    }
    let user_info = match value.get("user_info") {
        None => "{}".to_string(),
        Some(v) => v.encode(),
    };
    if user_info.len() > MAX_USER_INFO_BYTES {
        return Err(format!(
            "channel_data.user_info is larger than {MAX_USER_INFO_BYTES} bytes"
        ));
    }
    Ok(Member {
        user_id: user_id.into(),
        user_info: user_info.into(),
    })
}

/// Checks a member another node announces as strictly as a client's:
/// a user id of 1 to [`MAX_USER_ID_LEN`] bytes and a `user_info` that is
/// JSON of at most [`MAX_USER_INFO_BYTES`] (it is spliced into frames sent
/// to clients as it is).
pub fn check_announced(user_id: &str, user_info: &str) -> Result<(), String> {
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
        return Err(format!(
            "user id of {} bytes (1 to {MAX_USER_ID_LEN} allowed)",
            user_id.len()
        ));
    }
    if user_info.len() > MAX_USER_INFO_BYTES {
        return Err(format!(
            "user_info of {} bytes (at most {MAX_USER_INFO_BYTES})",
            user_info.len()
        ));
    }
    let mut bytes = user_info.as_bytes().to_vec();
    crate::json::parse(&mut bytes).map_err(|e| format!("user_info is not JSON: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, info: &str) -> Member {
        Member {
            user_id: id.into(),
            user_info: info.into(),
        }
    }

    #[test]
    fn channel_data_is_checked() {
        assert_eq!(
            parse_channel_data(r#"{"user_id":"1","user_info":{"name":"A"}}"#),
            Ok(m("1", r#"{"name":"A"}"#))
        );
        assert_eq!(parse_channel_data(r#"{"user_id":10}"#), Ok(m("10", "{}")));
        assert!(parse_channel_data("x").unwrap_err().contains("JSON"));
        assert!(parse_channel_data("[]").unwrap_err().contains("object"));
        assert!(parse_channel_data("{}").unwrap_err().contains("required"));
        assert!(parse_channel_data(r#"{"user_id":true}"#)
            .unwrap_err()
            .contains("string or a number"));
        assert!(parse_channel_data(r#"{"user_id":""}"#)
            .unwrap_err()
            .contains("empty"));
        let long = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129));
        assert!(parse_channel_data(&long).unwrap_err().contains("128"));
        let big = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "i".repeat(1100));
        assert!(parse_channel_data(&big).unwrap_err().contains("1024"));
    }

    #[test]
    fn announced_members_follow_the_client_rules() {
        assert!(check_announced("u1", "{}").is_ok());
        assert!(check_announced("u1", r#"{"name":"A"}"#).is_ok());
        assert!(check_announced("", "{}").is_err());
        assert!(check_announced(&"u".repeat(MAX_USER_ID_LEN + 1), "{}").is_err());
        assert!(check_announced("u1", r#"{"a":1"#).is_err());
        assert!(check_announced("u1", "},{\"event\":\"x\"").is_err());
        let big = format!("\"{}\"", "x".repeat(MAX_USER_INFO_BYTES));
        assert!(check_announced("u1", &big).is_err());
    }
}
