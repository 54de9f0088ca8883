//! Which address a WebSocket client connects from, for
//! `server.limits.max_connections_per_ip`.
//!
//! Without `server.limits.client_ip_header` it is the TCP peer address and
//! no header is read, so a client cannot claim another address. With it
//! (behind a proxy), it is the last comma-separated entry of that header:
//! the one the trusted proxy appended, as earlier entries of
//! `X-Forwarded-For` are whatever the client sent. A missing or unparsable
//! value falls back to the peer address. Addresses are parsed strictly
//! (`IpAddr::from_str`: no port, no brackets), and an IPv4-mapped IPv6
//! address counts as its IPv4 address.

use std::net::IpAddr;

/// The address a connection counts against: the last entry of `header`
/// (the configured header's value, when configured and present) if it is
/// an IP address, else `peer`.
pub fn resolve_client_ip(peer: IpAddr, header: Option<&str>) -> IpAddr {
    header
        .and_then(last_entry)
        .and_then(|entry| entry.parse::<IpAddr>().ok())
        .map(canonical)
        .unwrap_or_else(|| canonical(peer))
}

/// The last comma-separated entry, trimmed; `None` when it is empty.
fn last_entry(value: &str) -> Option<&str> {
    let entry = value.rsplit(',').next()?.trim();
    (!entry.is_empty()).then_some(entry)
}

/// One spelling per client: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
/// what a dual-stack listener reports for IPv4 clients) becomes its IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_a_header_the_peer_counts() {
        assert_eq!(resolve_client_ip(ip("127.0.0.1"), None), ip("127.0.0.1"));
        assert_eq!(
            resolve_client_ip(ip("2001:db8::1"), None),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn the_last_forwarded_entry_counts() {
        let peer = ip("127.0.0.1");
        let xff = Some("10.0.0.1, 203.0.113.5");
        assert_eq!(resolve_client_ip(peer, xff), ip("203.0.113.5"));
        assert_eq!(
            resolve_client_ip(peer, Some("203.0.113.5")),
            ip("203.0.113.5")
        );
        assert_eq!(
            resolve_client_ip(peer, Some(" 1.2.3.4 ,2001:db8::7 ")),
            ip("2001:db8::7")
        );
    }

    /// A client-written first entry never counts, however it is spelled.
    #[test]
    fn a_spoofed_first_entry_is_ignored() {
        let peer = ip("127.0.0.1");
        assert_eq!(
            resolve_client_ip(peer, Some("6.6.6.6, 198.51.100.9")),
            ip("198.51.100.9")
        );
        // The proxy's entry is garbage: the peer counts, not the client's claim.
        assert_eq!(resolve_client_ip(peer, Some("6.6.6.6, nonsense")), peer);
    }

    #[test]
    fn unparsable_values_fall_back_to_the_peer() {
        let peer = ip("192.0.2.10");
        for bad in [
            "",
            " ",
            "1.2.3.4,",
            "garbage",
            "1.2.3.4:80",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "01.2.3.4",
            "1.2.3",
            "unknown",
            "for=1.2.3.4",
        ] {
            assert_eq!(resolve_client_ip(peer, Some(bad)), peer, "{bad:?}");
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert_eq!(
            resolve_client_ip(ip("::ffff:127.0.0.1"), None),
            ip("127.0.0.1")
        );
        assert_eq!(
            resolve_client_ip(ip("::1"), Some("::ffff:203.0.113.5")),
            ip("203.0.113.5")
        );
        // Only the mapped form: `::1` and IPv4-compatible stay IPv6.
        assert_eq!(resolve_client_ip(ip("::1"), None), ip("::1"));
        assert_eq!(resolve_client_ip(ip("::7.7.7.7"), None), ip("::7.7.7.7"));
    }
}
