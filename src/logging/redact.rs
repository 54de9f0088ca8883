//! Credentials kept out of log lines: a URL is logged as
//! `scheme://host[:port]/path`, without its userinfo (`user:password@`),
//! query string (tokens) and fragment; a secret field prints as [`Masked`].

use std::fmt;

/// Stands in for a secret in a hand-written `Debug`: prints `***`.
pub struct Masked;

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `raw` without userinfo, query and fragment. Safety first for malformed
/// input: everything up to the last `@` goes (even one in a path or query),
/// so a password containing `/`, `?` or `#` is never half printed.
pub fn url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    format!("{scheme}{}", &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scheme_host_port_and_path() {
        assert_eq!(
            url("https://hooks.example.com:8443/pusher/hook"),
            "https://hooks.example.com:8443/pusher/hook"
        );
        assert_eq!(url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn drops_userinfo_query_and_fragment() {
        assert_eq!(
            url("https://user:hunter2@hooks.example.com/h?token=s3cret#frag"),
            "https://hooks.example.com/h"
        );
        assert_eq!(url("redis://:hunter2@db:6379/0"), "redis://db:6379/0");
        assert_eq!(url("http://x/h?api_key=s3cret"), "http://x/h");
    }

    #[test]
    fn malformed_urls_leak_no_password() {
        for raw in [
            "user:hunter2@db:6379",
            "redis:/user:hunter2@db",
            "rediss://user:hun/ter2@db",
            "redis://user:hun?ter2@db",
            "redis://user:hun#ter2@db",
        ] {
            let logged = url(raw);
            assert!(!logged.contains("hunter2"), "{raw} logged as {logged}");
            assert!(!logged.contains("hun"), "{raw} logged as {logged}");
            assert!(
                logged.ends_with("db") || logged.ends_with("db:6379"),
                "{logged}"
            );
        }
    }
}
