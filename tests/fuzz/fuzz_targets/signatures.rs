//! The signature checks: the HTTP API request (key, version, timestamp
//! window, body_md5, HMAC over the sorted decoded query) and client auth
//! strings (`key:signature`). The query string is fuzzed as it arrives,
//! percent-encoded, and decoded with `http::parse_query` as the server does.
//! Checks: no panic (overflow included) for any query, timestamp or clock;
//! a request the fuzzer signs correctly is accepted; one with a changed
//! body is refused; client auth accepts exactly `key:HMAC`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shardcast::apps::App;
use shardcast::auth::{
    api_string_to_sign, body_md5, sign, verify_api_request, verify_client_auth,
};
use shardcast::http::parse_query;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: &'a str,
    path: &'a str,
    /// The raw query string as it would follow `?`.
    query: &'a str,
    body: &'a [u8],
    /// Seconds of the server clock, any value a real clock could hold.
    now: u32,
    /// How far the signed timestamp is from the clock.
    skew: i16,
    secret: &'a str,
    client_auth: &'a str,
    to_sign: &'a str,
    /// Also tamper with the body after signing.
    tamper: bool,
}

fuzz_target!(|input: Input<'_>| {
    let app = App::new("app-id".into(), "app-key".into(), input.secret.to_string());
    let now = input.now as i64;

    // 1. Whatever arrives.
    let query = parse_query(input.query);
    let _ = verify_api_request(&app, input.method, input.path, &query, input.body, now);

    // 2. The same parameters, signed as a server library would.
    let mut signed: Vec<(String, String)> = query
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !matches!(
                k.as_str(),
                "auth_key" | "auth_timestamp" | "auth_version" | "body_md5" | "auth_signature"
            )
        })
        .collect();
    signed.push(("auth_key".into(), "app-key".into()));
    signed.push(("auth_timestamp".into(), (now + input.skew as i64).to_string()));
    signed.push(("auth_version".into(), "1.0".into()));
    if !input.body.is_empty() {
        signed.push(("body_md5".into(), body_md5(input.body)));
    }
    let method = input.method.to_string();
    let sig = sign(
        &app.secret,
        api_string_to_sign(&method, input.path, &signed).as_bytes(),
    );
    signed.push(("auth_signature".into(), sig));
    let result = verify_api_request(&app, &method, input.path, &signed, input.body, now);
    if (input.skew as i64).abs() <= 600 {
        assert!(result.is_ok(), "a correctly signed request was refused: {result:?}");
    } else {
        assert!(result.is_err(), "a stale timestamp was accepted");
    }
    if input.tamper && !input.body.is_empty() {
        let mut other = input.body.to_vec();
        other[0] ^= 1;
        assert!(verify_api_request(&app, &method, input.path, &signed, &other, now).is_err());
    }

    // 3. Client auth strings.
    let ok = verify_client_auth(&app, input.client_auth, input.to_sign);
    let expected = format!("app-key:{}", sign(&app.secret, input.to_sign.as_bytes()));
    assert_eq!(ok, input.client_auth == expected, "client auth mismatch");
    assert!(verify_client_auth(&app, &expected, input.to_sign));
});
