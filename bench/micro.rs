//! Micro benchmarks of the hot paths (`cargo bench --bench micro`):
//! frame encoding, Pusher JSON parsing, signature checks, and the
//! per-subscriber delivery loop. A tiny harness: each case runs for about
//! half a second, five times, and reports the median time per operation.

use shardcast::apps::{App, AppIdx, AppLimits};
use shardcast::auth;
use shardcast::http::parse_event;
use shardcast::pusher::channels::ChannelTable;
use shardcast::pusher::conns::ConnTable;
use shardcast::pusher::interest::{InterestTable, ShardInterest, ShardSet};
use shardcast::pusher::{inbound, messages};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `op` (which does `per_call` operations) and prints ns per operation.
fn bench(name: &str, per_call: u64, mut op: impl FnMut()) {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            for _ in 0..16 {
                op();
            }
            calls += 16;
        }
        samples.push(start.elapsed().as_nanos() as f64 / (calls * per_call) as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{name:<48} {:>10.1} ns/op", samples[2]);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and numbers from a test build mean nothing.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("not run: measure with `cargo bench`");
        return;
    }
    let data = format!(
        "{{\"seq\":1,\"ts\":1700000000000,\"pad\":\"{}\"}}",
        "x".repeat(60)
    );
    bench("frame: encode channel event (100 B data)", 1, || {
        black_box(messages::channel_event(
            black_box("my-event"),
            black_box("news"),
            black_box(&data),
        ));
    });

    let ping = br#"{"event":"pusher:ping","data":{}}"#.to_vec();
    bench("json: parse pusher:ping", 1, || {
        let mut m = ping.clone();
        black_box(inbound::parse(&mut m).ok());
    });
    let sub = br#"{"event":"pusher:subscribe","data":{"channel":"presence-room","auth":"app-key:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","channel_data":"{\"user_id\":\"1\"}"}}"#.to_vec();
    bench("json: parse pusher:subscribe (presence)", 1, || {
        let mut m = sub.clone();
        black_box(inbound::parse(&mut m).ok());
    });
    let body = format!(
        r#"{{"name":"my-event","channel":"news","data":{}}}"#,
        shardcast::json::json_str(&data)
    )
    .into_bytes();
    let limits = AppLimits::default();
    bench("json: parse trigger body", 1, || {
        let mut b = body.clone();
        black_box(parse_event(&mut b, &limits).ok());
    });

    let app = App::new("app-id".into(), "app-key".into(), "app-secret".into());
    let now = 1_700_000_000i64;
    let mut query: Vec<(String, String)> = vec![
        ("auth_key".into(), "app-key".into()),
        ("auth_timestamp".into(), now.to_string()),
        ("auth_version".into(), "1.0".into()),
        ("body_md5".into(), auth::body_md5(&body)),
    ];
    let sig = auth::sign(
        &app.secret,
        auth::api_string_to_sign("POST", "/apps/app-id/events", &query).as_bytes(),
    );
    query.push(("auth_signature".into(), sig));
    bench("auth: verify signed API request (md5 + hmac)", 1, || {
        black_box(
            auth::verify_api_request(&app, "POST", "/apps/app-id/events", &query, &body, now)
                .is_ok(),
        );
    });
    let channel_auth = format!(
        "app-key:{}",
        auth::sign(&app.secret, b"1024.5:private-room")
    );
    bench("auth: verify private channel auth", 1, || {
        black_box(auth::verify_client_auth(
            &app,
            &channel_auth,
            "1024.5:private-room",
        ));
    });

    // Sparse routing: what a publication pays to learn which shards want
    // it (a table of 64 shards holding 10,000 channels), and what a
    // channel's first subscriber and last unsubscriber on a shard pay.
    {
        let table = Arc::new(InterestTable::new(64));
        let mut holders: Vec<ShardInterest> = (0..64)
            .map(|s| ShardInterest::new(table.clone(), s))
            .collect();
        for i in 0..10_000 {
            let key = table.key(AppIdx(0), &format!("private-user-{i}"));
            holders[i % 64].hold(key);
        }
        let names: Vec<String> = (0..1024)
            .map(|i| format!("private-user-{}", i * 7))
            .collect();
        let mut i = 0;
        bench("interest: shards to post one channel's event to", 1, || {
            let mut set = ShardSet::default();
            table.add_to(table.key(AppIdx(0), black_box(&names[i & 1023])), &mut set);
            i += 1;
            black_box(set);
        });
        let mut mine = ShardInterest::new(table.clone(), 3);
        bench("interest: first subscriber + last unsubscriber", 1, || {
            let key = table.key(AppIdx(0), black_box("private-new"));
            mine.hold(key);
            mine.release(key);
        });
    }

    // The per-subscriber loop of deliver_local: look up the channel, queue
    // the shared frame for each subscriber, then drain the queues as the
    // writers would.
    for subscribers in [1_000u32, 10_000] {
        let mut conns = ConnTable::default();
        let mut channels = ChannelTable::new(1, ShardInterest::alone());
        for _ in 0..subscribers {
            let (key, _) = conns.insert(AppIdx(0), -1, 0);
            let subs = &mut conns.get_mut(key).expect("just inserted").subs;
            channels.subscribe(AppIdx(0), "news", key, subs, None);
        }
        let frame = messages::channel_event("my-event", "news", &data);
        let keys = conns.keys();
        bench(
            &format!("deliver: queue one frame per subscriber ({subscribers})"),
            subscribers as u64,
            || {
                for &key in channels.subscribers(AppIdx(0), "news") {
                    conns.enqueue(key, &frame, 4 << 20, 0);
                }
                for &key in &keys {
                    let c = conns.get_mut(key).unwrap();
                    c.out.clear();
                    c.out_bytes = 0;
                }
            },
        );
    }
}
