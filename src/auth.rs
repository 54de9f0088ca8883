//! Signatures: the HTTP API request signature, `body_md5`, and the
//! `key:signature` strings clients present for private, presence and user
//! authentication. Every comparison of a secret-derived value is constant-time.

use crate::apps::App;
use crate::errors::ApiError;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far `auth_timestamp` may be from the server's clock, in seconds.
pub const TIMESTAMP_WINDOW_SECS: i64 = 600;

/// Hex HMAC-SHA256 of `message` under `secret`.
pub fn sign(secret: &str, message: &[u8]) -> String {
    to_hex(&keyed(secret, message).finalize().into_bytes())
}

/// The HMAC-SHA256 state of `message` under `secret`, not yet finalized.
fn keyed(secret: &str, message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac
}

/// Whether `signature` (hex, either case) is the HMAC-SHA256 of `message`
/// under `secret`; compared in constant time by `Mac::verify_slice`.
pub fn signature_matches(secret: &str, message: &[u8], signature: &str) -> bool {
    let mut raw = [0u8; 32];
    if hex::decode_to_slice(signature, &mut raw).is_err() {
        return false;
    }
    keyed(secret, message).verify_slice(&raw).is_ok()
}

/// Hex MD5 of `body`, as sent in `body_md5`.
pub fn body_md5(body: &[u8]) -> String {
    to_hex(&Md5::digest(body))
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
    let mut params: Vec<(String, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    params.sort();
    let mut out = String::with_capacity(64 + path.len());
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
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
    verify_with(app, &request, || body_md5(body), now_secs)
}

/// What [`verify_with`] reads of a request besides its body.
struct ApiRequest<'a, K, V> {
    method: &'a str,
    path: &'a str,
    query: &'a [(K, V)],
    has_body: bool,
}

/// [`verify_api_request`] with the body's MD5 behind `hash_body`, called
/// only once the signature is good: the signed query carries the claimed
/// `body_md5`, so an unauthenticated request never costs a hash of its body.
fn verify_with<K: AsRef<str>, V: AsRef<str>>(
    app: &App,
    request: &ApiRequest<'_, K, V>,
    hash_body: impl FnOnce() -> String,
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
    let to_sign = api_string_to_sign(request.method, request.path, request.query);
    if !signature_matches(&app.secret, to_sign.as_bytes(), signature) {
        return unauthorized("Invalid signature: check the app secret and the string to sign");
    }
    // Signed by the app's owner from here on: hashing the body is earned.
    let md5_ok = claimed_md5.is_none_or(|sent| {
        constant_time_eq(sent.to_ascii_lowercase().as_bytes(), hash_body().as_bytes())
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
            body_md5(&body)
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

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
