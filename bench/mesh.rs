//! The cross-core mailbox hop (`cargo bench --bench mesh`): two pinned glommio
//! executors joined by a pair of bounded shared channels, the primitive the
//! shard mesh is built from. Reports the round-trip time of one message
//! (ping-pong) and the one-way throughput of a stream of messages.

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use std::time::Instant;

const ROUND_TRIPS: u64 = 200_000;
const STREAM: u64 = 2_000_000;

fn cpus() -> (usize, usize) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n >= 2 {
        (0, 1)
    } else {
        (0, 0)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and numbers from a test build mean nothing.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("not run: measure with `cargo bench`");
        return;
    }
    let (a, b) = cpus();
    // Ping-pong: latency of one hop there and back.
    let (to_b, from_a) = shared_channel::new_bounded::<u64>(1024);
    let (to_a, from_b) = shared_channel::new_bounded::<u64>(1024);
    let echo = LocalExecutorBuilder::new(Placement::Fixed(b))
        .spawn(move || async move {
            let rx = from_a.connect().await;
            let tx = to_a.connect().await;
            while let Some(v) = rx.recv().await {
                if tx.send(v).await.is_err() {
                    break;
                }
            }
        })
        .unwrap();
    let ping = LocalExecutorBuilder::new(Placement::Fixed(a))
        .spawn(move || async move {
            let tx = to_b.connect().await;
            let rx = from_b.connect().await;
            let start = Instant::now();
            for i in 0..ROUND_TRIPS {
                tx.send(i).await.unwrap();
                rx.recv().await.unwrap();
            }
            let ns = start.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64;
            println!("mesh: round trip (CPU {a} <-> CPU {b})            {ns:>10.1} ns");
        })
        .unwrap();
    ping.join().unwrap();
    echo.join().unwrap();

    // Stream: how many messages per second one ring carries.
    let (tx, rx) = shared_channel::new_bounded::<u64>(1024);
    let sink = LocalExecutorBuilder::new(Placement::Fixed(b))
        .spawn(move || async move {
            let rx = rx.connect().await;
            let mut n = 0u64;
            while rx.recv().await.is_some() {
                n += 1;
            }
            n
        })
        .unwrap();
    let source = LocalExecutorBuilder::new(Placement::Fixed(a))
        .spawn(move || async move {
            let tx = tx.connect().await;
            let start = Instant::now();
            for i in 0..STREAM {
                tx.send(i).await.unwrap();
            }
            drop(tx);
            start.elapsed()
        })
        .unwrap();
    let elapsed = source.join().unwrap();
    let received = sink.join().unwrap();
    assert_eq!(received, STREAM);
    let per_sec = STREAM as f64 / elapsed.as_secs_f64();
    println!(
        "mesh: one-way stream                          {:>10.2} M msgs/s",
        per_sec / 1e6
    );
}
