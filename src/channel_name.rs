//! Channel names: validation and the channel kind a name's prefix selects,
//! shared by everything that receives a name (a subscribe, a trigger, a
//! query, another node of a cluster).
//!
//! Prefixes are anchored at the start, and "cache" is a modifier on top of
//! the base kind (`private-cache-` is private *and* cached), unlike sockudo's
//! separate cache type (reference section 4, finding 4).

/// The base kind of a channel, from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`, the channel pusher-js subscribes after sign-in.
    ServerToUser,
}

/// A channel's kind plus whether it is a cache channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelClass {
    pub kind: ChannelKind,
    pub cache: bool,
}

pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

impl ChannelClass {
    pub fn of(name: &str) -> ChannelClass {
        let class = |kind, cache| ChannelClass { kind, cache };
        if name.starts_with(SERVER_TO_USER_PREFIX) {
            class(ChannelKind::ServerToUser, false)
        } else if let Some(rest) = name.strip_prefix("private-encrypted-") {
            class(ChannelKind::PrivateEncrypted, rest.starts_with("cache-"))
        } else if let Some(rest) = name.strip_prefix("private-") {
            class(ChannelKind::Private, rest.starts_with("cache-"))
        } else if let Some(rest) = name.strip_prefix("presence-") {
            class(ChannelKind::Presence, rest.starts_with("cache-"))
        } else {
            class(ChannelKind::Public, name.starts_with("cache-"))
        }
    }
}

/// Why a channel name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(usize),
    BadChar(char),
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "channel name is empty"),
            NameError::TooLong(max) => write!(f, "channel name is longer than {max} characters"),
            NameError::BadChar(c) => write!(
                f,
                "channel name contains {c:?}; allowed are A-Z a-z 0-9 and _ - = @ , . ;"
            ),
        }
    }
}

/// Checks a channel name: `[A-Za-z0-9_\-=@,.;]+`, at most `max_len` bytes.
/// `#server-to-user-` names are accepted with the same rule after the prefix.
pub fn validate_name(name: &str, max_len: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max_len {
        return Err(NameError::TooLong(max_len));
    }
    let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
    if body.is_empty() {
        return Err(NameError::Empty);
    }
    match body.chars().find(|&c| !is_name_char(c)) {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_kinds_with_cache_as_modifier() {
        let of = |n| ChannelClass::of(n);
        assert_eq!(
            of("news"),
            ChannelClass {
                kind: ChannelKind::Public,
                cache: false
            }
        );
        assert_eq!(
            of("cache-news"),
            ChannelClass {
                kind: ChannelKind::Public,
                cache: true
            }
        );
        assert_eq!(
            of("private-x"),
            ChannelClass {
                kind: ChannelKind::Private,
                cache: false
            }
        );
        assert_eq!(
            of("private-cache-x"),
            ChannelClass {
                kind: ChannelKind::Private,
                cache: true
            }
        );
        assert_eq!(
            of("private-encrypted-x").kind,
            ChannelKind::PrivateEncrypted
        );
        assert!(of("private-encrypted-cache-x").cache);
        assert_eq!(
            of("presence-cache-x"),
            ChannelClass {
                kind: ChannelKind::Presence,
                cache: true
            }
        );
        assert_eq!(of("#server-to-user-42").kind, ChannelKind::ServerToUser);
        // Anchored: a prefix in the middle does not count.
        assert_eq!(of("my-private-x").kind, ChannelKind::Public);
        assert!(!of("x-cache-y").cache);
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("a-Z_0=@,.;", 200), Ok(()));
        assert_eq!(validate_name("", 200), Err(NameError::Empty));
        assert_eq!(validate_name("a b", 200), Err(NameError::BadChar(' ')));
        assert_eq!(validate_name("é", 200), Err(NameError::BadChar('é')));
        assert_eq!(
            validate_name(&"a".repeat(201), 200),
            Err(NameError::TooLong(200))
        );
        assert_eq!(validate_name(&"a".repeat(200), 200), Ok(()));
        assert_eq!(validate_name("#server-to-user-7", 200), Ok(()));
        assert_eq!(validate_name("#other", 200), Err(NameError::BadChar('#')));
    }
}
