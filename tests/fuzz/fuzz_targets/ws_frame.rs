//! The WebSocket frame decoder as `ws::conn::ConnTask` drives it: the stream
//! arrives in reads of fuzzer-chosen sizes, an incomplete frame's bytes are
//! kept for the next read, every complete frame is decoded, and the first
//! error ends the connection. Checks: a decoder never uses more bytes than
//! it has, delivered text is valid UTF-8 and within the cap, control
//! payloads are at most 125 bytes, and the kept partial frame stays within
//! cap + the largest header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::ws::frame::{Decoder, Inbound};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // First byte: the message cap (small caps reach the size checks);
    // second: the read size.
    let max = match data[0] % 4 {
        0 => 64 * 1024,
        1 => 125,
        2 => 1 + data[0] as usize * 3,
        _ => 4096,
    };
    let step = 1 + data[1] as usize;
    let stream = &data[2..];

    let mut decoder = Decoder::default();
    let mut partial: Vec<u8> = Vec::new();
    let mut at = 0;
    'conn: while at < stream.len() {
        let n = step.min(stream.len() - at);
        let mut fresh = stream[at..at + n].to_vec();
        at += n;
        let mut kept = std::mem::take(&mut partial);
        let buf: &mut [u8] = if kept.is_empty() {
            &mut fresh[..]
        } else {
            kept.extend_from_slice(&fresh);
            &mut kept[..]
        };
        let mut pos = 0;
        loop {
            let len = buf.len() - pos;
            match decoder.decode(&mut buf[pos..], max) {
                Ok(None) => break,
                Ok(Some((message, used))) => {
                    assert!(used <= len && used >= 2, "used {used} of {len}");
                    match message {
                        Inbound::Text(t) => {
                            assert!(t.len() <= max, "text over the cap");
                            assert!(std::str::from_utf8(t).is_ok(), "text not UTF-8");
                        }
                        Inbound::Ping(p) => assert!(p.len() <= 125),
                        Inbound::Close(Some(code)) => {
                            assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999))
                        }
                        Inbound::Close(None) | Inbound::Pong | Inbound::Fragment => {}
                    }
                    pos += used;
                }
                Err(e) => {
                    assert!(matches!(e.code, 1002 | 1003 | 1007 | 1009), "code {}", e.code);
                    break 'conn;
                }
            }
        }
        if pos < buf.len() {
            partial = buf[pos..].to_vec();
        }
        assert!(partial.len() <= max + 14 + step, "kept {} bytes", partial.len());
    }
});
