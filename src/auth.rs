//! Signatures: the HTTP API request signature, `body_md5`, and the
//! `key:signature` strings clients present for private, presence and user
//! authentication. Every comparison of a secret-derived value is constant-time.

use crate::apps::App;
use crate::errors::ApiError;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use smallvec::SmallVec;
use std::cell::RefCell;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far `auth_timestamp` may be from the server's clock, in seconds.
pub const TIMESTAMP_WINDOW_SECS: i64 = 600;

/// Secrets whose keyed HMAC state a thread keeps (see [`keyed_state`]).
const KEPT_KEYS: usize = 16;

thread_local! {
    /// The HMAC-SHA256 state of each recently used secret before any
    /// message, newest last: the key schedule (two SHA-256 blocks) is done
    /// once per secret and thread, not once per signature. At most
    /// [`KEPT_KEYS`] entries; the oldest goes first.
    static KEYED: RefCell<Vec<(Box<str>, HmacSha256)>> = const { RefCell::new(Vec::new()) };
}

/// Hex HMAC-SHA256 of `message` under `secret`.
pub fn sign(secret: &str, message: &[u8]) -> String {
    to_hex(&keyed(secret, message).finalize().into_bytes())
}

/// The HMAC-SHA256 state of `message` under `secret`, not yet finalized.
fn keyed(secret: &str, message: &[u8]) -> HmacSha256 {
    let mut mac = keyed_state(secret);
    mac.update(message);
    mac
}

/// The HMAC-SHA256 state keyed with `secret`, from this thread's kept
/// states when it has one. Secrets come from the server's own app
/// configuration, never from a request, so looking them up is not a
/// comparison an attacker can time.
fn keyed_state(secret: &str) -> HmacSha256 {
    let fresh =
        || HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    KEYED.with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return fresh();
        };
        if let Some((_, mac)) = kept.iter().find(|(s, _)| **s == *secret) {
            return mac.clone();
        }
        let mac = fresh();
        if kept.len() >= KEPT_KEYS {
            kept.remove(0);
        }
        kept.push((secret.into(), mac.clone()));
        mac
    })
}

/// Whether `signature` (hex, either case) is the HMAC-SHA256 of `message`
/// under `secret`; compared in constant time by `Mac::verify_slice`.
pub fn signature_matches(secret: &str, message: &[u8], signature: &str) -> bool {
    mac_matches(keyed(secret, message), signature)
}

/// Whether `signature` (hex, either case) is what `mac` finalizes to,
/// compared in constant time.
fn mac_matches(mac: HmacSha256, signature: &str) -> bool {
    match decode_hex::<32>(signature) {
        Some(raw) => mac.verify_slice(&raw).is_ok(),
        None => false,
    }
}

/// The `N` bytes `text` spells in hex (either case); `None` unless it is
/// exactly `2 * N` hex digits.
fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    /// Each byte's value as a hex digit; 0xff for a byte that is not one.
    const DIGITS: [u8; 256] = {
        let mut table = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            table[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (DIGITS[pair[0] as usize], DIGITS[pair[1] as usize]);
        bad |= (high | low) & 0xf0;
        *byte = high << 4 | (low & 0x0f);
    }
    (bad == 0).then_some(out)
}

/// Hex MD5 of `body`, as sent in `body_md5`.
pub fn body_md5(body: &[u8]) -> String {
    to_hex(&body_digest(body))
}

/// The MD5 digest of `body`.
pub fn body_digest(body: &[u8]) -> [u8; 16] {
    Md5::digest(body).into()
}

/// Lower-case hex of a digest (32 bytes at most), in one allocation.
fn to_hex(digest: &[u8]) -> String {
    let mut buf = [0u8; 64];
    let out = &mut buf[..digest.len() * 2];
    hex::encode_to_slice(digest, out).expect("room for two digits a byte");
    std::str::from_utf8(out).expect("hex digits").to_string()
}

/// Compares two byte strings in time that depends only on their lengths
/// (`subtle::ConstantTimeEq`; strings of different lengths are unequal).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The string a Pusher server library signs for an HTTP API request:
/// `METHOD\nPATH\nk=v&...` over every query parameter but `auth_signature`,
/// keys lower-cased and sorted.
pub fn api_string_to_sign<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    path: &str,
    query: &[(K, V)],
) -> String {
    let mut out = Vec::with_capacity(64 + path.len());
    write_string_to_sign(method, path, query, |piece| out.extend_from_slice(piece));
    String::from_utf8(out).expect("pieces of UTF-8 strings, cut at ASCII bytes")
}

/// Hands [`api_string_to_sign`] to `out` piece by piece, without building
/// it: the parameters are sorted as borrowed pairs (by lower-cased key,
/// then value, which is the order of the lower-cased pairs), and only a key
/// or method that needs its case changed is copied.
fn write_string_to_sign<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    path: &str,
    query: &[(K, V)],
    mut out: impl FnMut(&[u8]),
) {
    let mut params: SmallVec<[(&str, &str); 8]> = query
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .collect();
    params.sort_unstable_by(|a, b| lower_cmp(a.0, b.0).then_with(|| a.1.cmp(b.1)));
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        out(method.to_ascii_uppercase().as_bytes());
    } else {
        out(method.as_bytes());
    }
    out(b"\n");
    out(path.as_bytes());
    out(b"\n");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out(b"&");
        }
        if k.bytes().any(|b| b.is_ascii_uppercase()) {
            out(k.to_ascii_lowercase().as_bytes());
        } else {
            out(k.as_bytes());
        }
        out(b"=");
        out(v.as_bytes());
    }
}

/// Orders `a` and `b` as their ASCII-lower-cased forms would order.
fn lower_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|b| b.to_ascii_lowercase())
        .cmp(b.bytes().map(|b| b.to_ascii_lowercase()))
}

/// Checks an HTTP API request's authentication (Pusher REST API,
/// "Authentication"): key, version, timestamp window, signature, then
/// `body_md5`. `query` holds the decoded parameters; they are signed
/// unescaped, as the Pusher docs specify and the official libraries do.
pub fn verify_api_request<K: AsRef<str>, V: AsRef<str>>(
    app: &App,
    method: &str,
    path: &str,
    query: &[(K, V)],
    body: &[u8],
    now_secs: i64,
) -> Result<(), ApiError> {
    let request = ApiRequest {
        method,
        path,
        query,
        has_body: !body.is_empty(),
    };
    verify_with(app, &request, || body_digest(body), now_secs)
}

/// What [`verify_with`] reads of a request besides its body.
struct ApiRequest<'a, K, V> {
    method: &'a str,
    path: &'a str,
    query: &'a [(K, V)],
    has_body: bool,
}

/// [`verify_api_request`] with the body's MD5 digest behind `hash_body`, called
/// only once the signature is good: the signed query carries the claimed
/// `body_md5`, so an unauthenticated request never costs a hash of its body.
fn verify_with<K: AsRef<str>, V: AsRef<str>>(
    app: &App,
    request: &ApiRequest<'_, K, V>,
    hash_body: impl FnOnce() -> [u8; 16],
    now_secs: i64,
) -> Result<(), ApiError> {
    let param = |name: &str| {
        request
            .query
            .iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    };
    let unauthorized = |why: &str| Err(ApiError::Unauthorized(why.to_string()));
    let Some(key) = param("auth_key") else {
        return unauthorized("Missing auth_key query parameter");
    };
    if !constant_time_eq(key.as_bytes(), app.key.as_bytes()) {
        return unauthorized("auth_key does not match the app's key");
    }
    match param("auth_version") {
        Some("1.0") => {}
        Some(_) => return unauthorized("Unsupported auth_version: only 1.0 is supported"),
        None => return unauthorized("Missing auth_version query parameter"),
    }
    let Some(ts) = param("auth_timestamp") else {
        return unauthorized("Missing auth_timestamp query parameter");
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return unauthorized("auth_timestamp is not a number of seconds");
    };
    if now_secs.abs_diff(ts) > TIMESTAMP_WINDOW_SECS as u64 {
        return unauthorized(
            "auth_timestamp is more than 600 seconds away from the server time: check the clock",
        );
    }
    let claimed_md5 = param("body_md5");
    if claimed_md5.is_none() && request.has_body {
        return unauthorized("Missing body_md5 query parameter for a request with a body");
    }
    let Some(signature) = param("auth_signature") else {
        return unauthorized("Missing auth_signature query parameter");
    };
    let mut mac = keyed_state(&app.secret);
    write_string_to_sign(request.method, request.path, request.query, |piece| {
        mac.update(piece)
    });
    if !mac_matches(mac, signature) {
        return unauthorized("Invalid signature: check the app secret and the string to sign");
    }
    // Signed by the app's owner from here on: hashing the body is earned.
    // The claim is 32 hex digits of either case (as the lower-cased hex
    // string it was compared as before).
    let md5_ok = claimed_md5.is_none_or(|sent| {
        decode_hex::<16>(sent).is_some_and(|claimed| constant_time_eq(&claimed, &hash_body()))
    });
    if md5_ok {
        Ok(())
    } else {
        unauthorized("body_md5 does not match the MD5 of the request body")
    }
}

/// Checks a client-presented `key:signature` over `string_to_sign`
/// (private: `socket_id:channel`; presence adds `:channel_data`;
/// user sign-in: `socket_id::user::user_data`).
pub fn verify_client_auth(app: &App, auth: &str, string_to_sign: &str) -> bool {
    let Some((key, signature)) = auth.split_once(':') else {
        return false;
    };
    // Both halves are checked without an early exit on the first mismatch.
    let key_ok = constant_time_eq(key.as_bytes(), app.key.as_bytes());
    let sig_ok = lower_hex(signature)
        && signature_matches(&app.secret, string_to_sign.as_bytes(), signature);
    key_ok & sig_ok
}

/// Whether `s` has no upper-case hex digit: client signatures are
/// compared as lower-case hex strings, as the Pusher libraries produce them.
fn lower_hex(s: &str) -> bool {
    !s.bytes().any(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs_app() -> App {
        App::new(
            "3".into(),
            "278d425bdf160c739803".into(),
            "7ad3773142a6692b25b8".into(),
        )
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Worked example from the Pusher REST API docs (reference 2.6).
    #[test]
    fn api_signature_matches_the_docs_example() {
        let query = q(&[
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ]);
        let s = api_string_to_sign("POST", "/apps/3/events", &query);
        assert_eq!(
            s,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            sign("7ad3773142a6692b25b8", s.as_bytes()),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    /// The docs' body for that example hashes to the documented body_md5.
    #[test]
    fn body_md5_of_the_docs_body() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
    }

    /// Worked example from the auth-signatures docs (reference 2.5).
    #[test]
    fn private_channel_auth_matches_the_docs_example() {
        let app = docs_app();
        let sig = sign(&app.secret, b"1234.1234:private-foobar");
        assert_eq!(
            sig,
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        let auth = format!("{}:{}", app.key, sig);
        assert!(verify_client_auth(&app, &auth, "1234.1234:private-foobar"));
        assert!(!verify_client_auth(&app, &auth, "1234.1235:private-foobar"));
        assert!(!verify_client_auth(
            &app,
            "wrong:sig",
            "1234.1234:private-foobar"
        ));
        assert!(!verify_client_auth(
            &app,
            "nocolon",
            "1234.1234:private-foobar"
        ));
    }

    fn signed(app: &App, method: &str, path: &str, body: &[u8], ts: i64) -> Vec<(String, String)> {
        let mut query = q(&[("auth_key", &app.key), ("auth_version", "1.0")]);
        query.push(("auth_timestamp".into(), ts.to_string()));
        if !body.is_empty() {
            query.push(("body_md5".into(), body_md5(body)));
        }
        let sig = sign(
            &app.secret,
            api_string_to_sign(method, path, &query).as_bytes(),
        );
        query.push(("auth_signature".into(), sig));
        query
    }

    #[test]
    fn verify_accepts_a_signed_request_and_names_each_failure() {
        let app = docs_app();
        let body = b"{\"name\":\"e\"}";
        let now = 1_700_000_000;
        let good = signed(&app, "POST", "/apps/3/events", body, now);
        assert_eq!(
            verify_api_request(&app, "POST", "/apps/3/events", &good, body, now),
            Ok(())
        );
        // Wrong path, wrong body, stale timestamp, wrong key, missing signature.
        let err = |r: Result<(), ApiError>| match r {
            Err(ApiError::Unauthorized(m)) => m,
            other => panic!("expected 401, got {other:?}"),
        };
        assert!(err(verify_api_request(
            &app,
            "POST",
            "/apps/3/batch_events",
            &good,
            body,
            now
        ))
        .contains("signature"));
        assert!(err(verify_api_request(
            &app,
            "POST",
            "/apps/3/events",
            &good,
            b"{}",
            now
        ))
        .contains("body_md5"));
        assert!(err(verify_api_request(
            &app,
            "POST",
            "/apps/3/events",
            &good,
            body,
            now + 601
        ))
        .contains("600"));
        let mut other_key = good.clone();
        other_key[0].1 = "nope".into();
        assert!(err(verify_api_request(
            &app,
            "POST",
            "/apps/3/events",
            &other_key,
            body,
            now
        ))
        .contains("auth_key"));
        let no_sig: Vec<_> = good
            .iter()
            .filter(|(k, _)| k != "auth_signature")
            .cloned()
            .collect();
        assert!(err(verify_api_request(
            &app,
            "POST",
            "/apps/3/events",
            &no_sig,
            body,
            now
        ))
        .contains("auth_signature"));
        let no_md5 = signed(&app, "POST", "/apps/3/events", b"", now);
        assert!(err(verify_api_request(
            &app,
            "POST",
            "/apps/3/events",
            &no_md5,
            body,
            now
        ))
        .contains("body_md5"));
    }

    /// A request whose signature fails is refused before its body is
    /// hashed; a good one hashes it exactly once.
    #[test]
    fn the_body_is_hashed_only_after_the_signature_passes() {
        let app = docs_app();
        let body = vec![b'x'; 4 * 1024 * 1024];
        let now = 1_700_000_000;
        let good = signed(&app, "POST", "/apps/3/events", &body, now);
        let mut forged = good.clone();
        forged.last_mut().unwrap().1 = "00".repeat(32);
        let hashes = std::cell::Cell::new(0);
        let hash = || {
            hashes.set(hashes.get() + 1);
            body_digest(&body)
        };
        let forged_request = ApiRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &forged[..],
            has_body: true,
        };
        let refused = verify_with(&app, &forged_request, hash, now);
        assert!(matches!(refused, Err(ApiError::Unauthorized(m)) if m.contains("signature")));
        assert_eq!(hashes.get(), 0, "body hashed for a forged signature");
        let good_request = ApiRequest {
            query: &good[..],
            ..forged_request
        };
        assert_eq!(verify_with(&app, &good_request, hash, now), Ok(()));
        assert_eq!(hashes.get(), 1);
    }

    #[test]
    fn signature_matches_takes_hex_of_the_right_length_only() {
        let sig = sign("secret", b"message");
        assert!(signature_matches("secret", b"message", &sig));
        assert!(signature_matches(
            "secret",
            b"message",
            &sig.to_ascii_uppercase()
        ));
        assert!(!signature_matches("secret", b"message!", &sig));
        assert!(!signature_matches("secret", b"message", &sig[..62]));
        assert!(!signature_matches(
            "secret",
            b"message",
            &format!("{sig}00")
        ));
        assert!(!signature_matches("secret", b"message", "zz"));
    }

    /// The string to sign, built as the Pusher docs describe it (keys
    /// lower-cased, pairs sorted), for comparison with the streamed one.
    fn docs_string_to_sign(method: &str, path: &str, query: &[(String, String)]) -> String {
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        pairs.sort();
        let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{}\n{path}\n{}",
            method.to_ascii_uppercase(),
            joined.join("&")
        )
    }

    /// Mixed-case and repeated keys, keys that are prefixes of others,
    /// values that decide the order, and an upper-case `AUTH_SIGNATURE`.
    #[test]
    fn string_to_sign_is_the_documented_one() {
        let queries = [
            q(&[("b", "2"), ("A", "1"), ("a", "0"), ("AUTH_SIGNATURE", "x")]),
            q(&[
                ("ab", "1"),
                ("a", "2"),
                ("aB", "0"),
                ("a_", "3"),
                ("A", "1"),
            ]),
            q(&[
                ("Info", "user_count"),
                ("info", "subscription_count"),
                ("z", ""),
            ]),
            q(&[]),
            q(&[("auth_signature", "s")]),
        ];
        for query in &queries {
            for method in ["POST", "post", "Get"] {
                assert_eq!(
                    api_string_to_sign(method, "/apps/1/events", query),
                    docs_string_to_sign(method, "/apps/1/events", query),
                    "{method} {query:?}"
                );
            }
        }
    }

    /// Each of many secrets, used in turns (more than a thread keeps
    /// keyed), signs as a fresh HMAC under it does.
    #[test]
    fn kept_keys_sign_under_their_own_secret() {
        let secrets: Vec<String> = (0..KEPT_KEYS + 3).map(|i| format!("secret-{i}")).collect();
        for round in 0..3 {
            for secret in &secrets {
                let message = format!("message {round}");
                let mut fresh = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
                fresh.update(message.as_bytes());
                assert_eq!(
                    sign(secret, message.as_bytes()),
                    to_hex(&fresh.finalize().into_bytes())
                );
            }
        }
    }

    /// `body_md5` is compared as hex of either case; anything else that is
    /// not the body's digest is refused.
    #[test]
    fn body_md5_claims_of_either_case() {
        let app = docs_app();
        let body = b"{\"name\":\"e\"}";
        let now = 1_700_000_000;
        let with_md5 = |md5: &str| {
            let mut query = q(&[("auth_key", &app.key), ("auth_version", "1.0")]);
            query.push(("auth_timestamp".into(), now.to_string()));
            query.push(("body_md5".into(), md5.to_string()));
            let sig = sign(
                &app.secret,
                api_string_to_sign("POST", "/apps/3/events", &query).as_bytes(),
            );
            query.push(("auth_signature".into(), sig));
            verify_api_request(&app, "POST", "/apps/3/events", &query, body, now)
        };
        let md5 = body_md5(body);
        assert_eq!(with_md5(&md5), Ok(()));
        assert_eq!(with_md5(&md5.to_ascii_uppercase()), Ok(()));
        for wrong in [&md5[..30], &format!("{md5}00"), &"0".repeat(32), "zz", ""] {
            assert!(
                matches!(with_md5(wrong), Err(ApiError::Unauthorized(m)) if m.contains("body_md5")),
                "{wrong:?} accepted"
            );
        }
    }

    /// The hex decoder agrees with the `hex` crate on every digit pair and
    /// refuses what it refuses.
    #[test]
    fn decodes_hex_as_the_hex_crate_does() {
        for a in 0u8..=255 {
            for b in 0u8..=255 {
                let Ok(text) = std::str::from_utf8(&[a, b]).map(str::to_string) else {
                    continue;
                };
                let mut want = [0u8; 1];
                let want = hex::decode_to_slice(&text, &mut want).ok().map(|()| want);
                assert_eq!(decode_hex::<1>(&text), want, "{text:?}");
            }
        }
        assert_eq!(decode_hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(decode_hex::<2>("0aF"), None);
        assert_eq!(decode_hex::<2>("0aFf0"), None);
        assert_eq!(decode_hex::<2>("é1"), None);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
