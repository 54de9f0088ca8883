//! WebSocket framing (RFC 6455) on raw TCP with hand-encoded frames.

use crate::support::*;
use std::time::Duration;

const PING: &[u8] = br#"{"event":"pusher:ping","data":{}}"#;

#[test]
fn handshake_by_hand_and_a_masked_text_frame() {
    let server = Server::start();
    // Ws::upgrade checks the 101, Upgrade/Connection and Sec-WebSocket-Accept.
    let mut ws = Ws::upgrade(server.port, "/app/app-key?protocol=7").expect("101");
    ws.read_established();
    ws.send_raw(&encode_frame(true, OP_TEXT, PING, true));
    ws.expect_event("pusher:pong");
    // A 16-bit and a 64-bit length header are read as well.
    let mut padded = br#"{"event":"pusher:ping","data":{"pad":""#.to_vec();
    padded.extend(std::iter::repeat_n(b'x', 300));
    padded.extend_from_slice(b"\"}}");
    ws.send_raw(&encode_frame(true, OP_TEXT, &padded, true));
    ws.expect_event("pusher:pong");
    let mut long = encode_frame(true, OP_TEXT, PING, true);
    // Re-encode the same payload with a (non-minimal) 64-bit length.
    long[1] = 0x80 | 127;
    let mask_and_payload = long[2..].to_vec();
    long.truncate(2);
    long.extend_from_slice(&(PING.len() as u64).to_be_bytes());
    long.extend_from_slice(&mask_and_payload);
    ws.send_raw(&long);
    ws.expect_event("pusher:pong");
    ws.close();
}

#[test]
fn frames_split_across_tcp_writes_are_reassembled() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let frame = encode_frame(true, OP_TEXT, PING, true);
    for chunk in frame.chunks(3) {
        ws.send_raw(chunk);
        std::thread::sleep(Duration::from_millis(5));
    }
    ws.expect_event("pusher:pong");
    // Two frames in one write are both answered.
    let mut two = frame.clone();
    two.extend(encode_frame(true, OP_TEXT, PING, true));
    ws.send_raw(&two);
    ws.expect_event("pusher:pong");
    ws.expect_event("pusher:pong");
    ws.close();
}

#[test]
fn fragmented_text_message_with_interleaved_control_frame_is_reassembled() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let (a, rest) = PING.split_at(10);
    let (b, c) = rest.split_at(12);
    ws.send_frame(false, OP_TEXT, a);
    ws.send_frame(false, OP_CONT, b);
    ws.send_frame(true, OP_PING, b"hello");
    ws.send_frame(true, OP_CONT, c);
    // The WebSocket ping is answered at once with a pong echoing its payload…
    let pong = ws.recv();
    assert_eq!(pong.opcode, OP_PONG, "{pong:?}");
    assert_eq!(pong.payload, b"hello");
    // …and the reassembled message is handled.
    ws.expect_event("pusher:pong");
    // A fragmented message sent in one write works too.
    let mut all = encode_frame(false, OP_TEXT, a, true);
    all.extend(encode_frame(false, OP_CONT, b, true));
    all.extend(encode_frame(true, OP_CONT, c, true));
    ws.send_raw(&all);
    ws.expect_event("pusher:pong");
    ws.close();
}

#[test]
fn websocket_ping_gets_pong_with_same_payload() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.send_frame(true, OP_PING, b"");
    let f = ws.recv();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_PONG, &b""[..]));
    ws.send_frame(true, OP_PING, &[7u8; 125]);
    let f = ws.recv();
    assert_eq!((f.opcode, f.payload), (OP_PONG, vec![7u8; 125]));
    // Unsolicited pongs are ignored.
    ws.send_frame(true, OP_PONG, b"x");
    // Handled in order: the next frame answers a ping sent after it.
    ws.send_frame(true, OP_PING, b"after");
    let f = ws.recv();
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_PONG, &b"after"[..]));
    ws.close();
}

/// Sends `bytes` and expects a bare close frame with `code`, then the end of the stream.
fn expect_protocol_close(bytes: &[u8], code: u16) {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.send_raw_lenient(bytes);
    let reason = ws.expect_close(code);
    assert!(reason.len() <= 123);
    ws.send_raw_lenient(&encode_frame(true, OP_CLOSE, &code.to_be_bytes(), true));
    ws.expect_eof(WAIT);
    // Other connections are unaffected.
    Ws::connect(server.port).close();
}

#[test]
fn binary_frame_closes_with_1003() {
    expect_protocol_close(&encode_frame(true, OP_BINARY, b"\x01\x02\x03", true), 1003);
}

#[test]
fn frame_over_64_kib_closes_with_1009() {
    let mut payload = br#"{"event":"pusher:ping","data":""#.to_vec();
    payload.resize(64 * 1024 + 1 - 3, b'x');
    payload.extend_from_slice(b"\"}");
    payload.push(b' ');
    assert_eq!(payload.len(), 64 * 1024 + 1);
    expect_protocol_close(&encode_frame(true, OP_TEXT, &payload, true), 1009);
}

#[test]
fn frame_of_exactly_64_kib_is_accepted() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let mut payload = br#"{"event":"pusher:ping","data":""#.to_vec();
    payload.resize(64 * 1024 - 2, b'x');
    payload.extend_from_slice(b"\"}");
    assert_eq!(payload.len(), 64 * 1024);
    ws.send_frame(true, OP_TEXT, &payload);
    ws.expect_event("pusher:pong");
    ws.close();
}

#[test]
fn fragments_adding_up_past_64_kib_close_with_1009() {
    let mut bytes = encode_frame(false, OP_TEXT, &[b' '; 40 * 1024], true);
    bytes.extend(encode_frame(true, OP_CONT, &[b' '; 40 * 1024], true));
    expect_protocol_close(&bytes, 1009);
}

#[test]
fn unmasked_frame_closes_with_1002() {
    expect_protocol_close(&encode_frame(true, OP_TEXT, PING, false), 1002);
}

#[test]
fn invalid_utf8_text_closes_with_1007() {
    expect_protocol_close(
        &encode_frame(true, OP_TEXT, b"{\"event\":\"\xff\xfe\"}", true),
        1007,
    );
}

#[test]
fn invalid_utf8_across_fragments_closes_with_1007() {
    // "é" is C3 A9: split between two fragments it is fine…
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.send_frame(
        false,
        OP_TEXT,
        b"{\"event\":\"pusher:ping\",\"data\":{\"x\":\"\xc3",
    );
    ws.send_frame(true, OP_CONT, b"\xa9\"}}");
    ws.expect_event("pusher:pong");
    ws.close();
    // …but a truncated sequence is not.
    let mut bytes = encode_frame(false, OP_TEXT, b"{\"a\":\"\xc3", true);
    bytes.extend(encode_frame(true, OP_CONT, b"\"}", true));
    expect_protocol_close(&bytes, 1007);
}

#[test]
fn protocol_violations_close_with_1002() {
    // Reserved bit set.
    let mut rsv = encode_frame(true, OP_TEXT, PING, true);
    rsv[0] |= 0x40;
    expect_protocol_close(&rsv, 1002);
    // Reserved opcode.
    expect_protocol_close(&encode_frame(true, 0x3, b"x", true), 1002);
    // Continuation with no message started.
    expect_protocol_close(&encode_frame(true, OP_CONT, b"x", true), 1002);
    // New text message while a fragmented one is open.
    let mut bytes = encode_frame(false, OP_TEXT, b"{", true);
    bytes.extend(encode_frame(true, OP_TEXT, PING, true));
    expect_protocol_close(&bytes, 1002);
    // Fragmented control frame.
    expect_protocol_close(&encode_frame(false, OP_PING, b"x", true), 1002);
    // Control frame over 125 bytes.
    expect_protocol_close(&encode_frame(true, OP_PING, &[0u8; 126], true), 1002);
    // Close frames with a 1-byte payload or an invalid code.
    expect_protocol_close(&encode_frame(true, OP_CLOSE, &[0x03], true), 1002);
    expect_protocol_close(
        &encode_frame(true, OP_CLOSE, &1005u16.to_be_bytes(), true),
        1002,
    );
}

#[test]
fn client_close_is_echoed_and_the_stream_ends() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    ws.send_frame(true, OP_CLOSE, &payload);
    ws.expect_close(1000);
    ws.expect_eof(WAIT);

    // Another code is echoed as sent; an empty close is answered with 1000.
    let mut ws = Ws::connect(server.port);
    ws.send_close(4000);
    ws.expect_close(4000);
    ws.expect_eof(WAIT);
    let mut ws = Ws::connect(server.port);
    ws.send_frame(true, OP_CLOSE, b"");
    ws.expect_close(1000);
    ws.expect_eof(WAIT);
}

#[test]
fn frames_after_close_are_ignored() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let mut bytes = encode_frame(true, OP_CLOSE, &1000u16.to_be_bytes(), true);
    bytes.extend(encode_frame(true, OP_TEXT, PING, true));
    ws.send_raw(&bytes);
    ws.expect_close(1000);
    ws.expect_eof(WAIT);
}

#[test]
fn abrupt_disconnect_leaves_server_healthy() {
    let server = Server::start();
    for _ in 0..10 {
        let mut ws = Ws::connect(server.port);
        ws.subscribe("c");
        // Half a frame, then gone.
        let f = encode_frame(true, OP_TEXT, PING, true);
        ws.send_raw(&f[..5]);
        ws.shutdown();
    }
    let mut ws = Ws::connect(server.port);
    ws.subscribe("c");
    trigger(
        server.port,
        &DEV,
        &serde_json::json!({"name":"e","channel":"c","data":"d"}),
    );
    ws.expect_text(&event_text("e", "c", "d"));
    ws.close();
}

#[test]
fn max_frame_kb_from_config_is_the_limit() {
    let server = Server::start_with("[server.limits]\nmax_frame_kb = 1\n");
    let mut ws = Ws::connect(server.port);
    let mut payload = br#"{"event":"pusher:ping","data":""#.to_vec();
    payload.resize(1024 - 2, b'x');
    payload.extend_from_slice(b"\"}");
    ws.send_frame(true, OP_TEXT, &payload);
    ws.expect_event("pusher:pong");
    payload.insert(40, b'x');
    ws.send_frame(true, OP_TEXT, &payload);
    ws.expect_close(1009);
}
