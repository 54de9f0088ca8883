//! WebSocket frames (RFC 6455) on the hot path.
//!
//! Outbound: a [`Frame`] is an immutable, fully encoded server frame (header
//! plus unmasked payload) in one `Bytes`. It is built once per broadcast and
//! shared by every recipient on every shard; cloning it is a reference-count
//! increment. Payloads are written straight after a reserved header gap, so
//! encoding never copies the payload.
//!
//! Inbound: [`Decoder`] turns bytes from a client into [`Inbound`] messages:
//! it checks masking and reserved bits, unmasks in place, reassembles
//! fragmented text messages up to a size cap and validates UTF-8. Headers are
//! parsed with tungstenite's `FrameHeader`. Errors carry the RFC 6455 close
//! code to answer with.

use bytes::Bytes;
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Largest header of an unmasked server frame: 2 bytes + 8 bytes of length.
const MAX_HEADER: usize = 10;

/// An encoded server-to-client WebSocket frame, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Builds a text frame whose payload `write` appends to the buffer it is given.
    pub fn text_with(write: impl FnOnce(&mut Vec<u8>)) -> Frame {
        Self::build(OpCode::Data(Data::Text), 128, write)
    }

    /// A text frame with the given payload.
    pub fn text(payload: &[u8]) -> Frame {
        Self::build(OpCode::Data(Data::Text), payload.len(), |b| {
            b.extend_from_slice(payload)
        })
    }

    /// A close frame with a status code and a reason (cut to fit 123 bytes).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        Self::build(OpCode::Control(Control::Close), 2 + cut, |b| {
            b.extend_from_slice(&code.to_be_bytes());
            b.extend_from_slice(&reason.as_bytes()[..cut]);
        })
    }

    /// A pong frame echoing a ping's payload.
    pub fn pong(payload: &[u8]) -> Frame {
        Self::build(OpCode::Control(Control::Pong), payload.len(), |b| {
            b.extend_from_slice(payload)
        })
    }

    fn build(opcode: OpCode, capacity: usize, write: impl FnOnce(&mut Vec<u8>)) -> Frame {
        let mut buf = Vec::with_capacity(MAX_HEADER + capacity);
        buf.resize(MAX_HEADER, 0);
        write(&mut buf);
        let len = (buf.len() - MAX_HEADER) as u64;
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        let start = MAX_HEADER - header.len(len);
        header
            .format(len, &mut Cursor::new(&mut buf[start..MAX_HEADER]))
            .expect("header fits the reserved gap");
        Frame(Bytes::from(buf).slice(start..))
    }

    /// Takes back a frame another node encoded (cluster messages): `None`
    /// unless `bytes` is exactly one unfragmented, unmasked text frame.
    pub fn from_encoded(bytes: Bytes) -> Option<Frame> {
        let (header, len) = FrameHeader::parse(&mut Cursor::new(&bytes[..])).ok()??;
        // A length field near 2^64 must not overflow the sum.
        let whole = (header.len(len) as u64).checked_add(len)?;
        let text = header.opcode == OpCode::Data(Data::Text);
        let plain = header.is_final && header.mask.is_none() && !header.rsv1;
        (text && plain && !header.rsv2 && !header.rsv3 && whole == bytes.len() as u64)
            .then_some(Frame(bytes))
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The payload without the header (for tests and logs).
    pub fn payload(&self) -> &[u8] {
        let b = &self.0;
        let skip = match b[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &b[skip..]
    }
}

/// A message decoded from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A complete text message (valid UTF-8), mutable for in-place JSON parsing.
    Text(&'a mut [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The client closes; the code it sent, if any.
    Close(Option<u16>),
    /// A fragment of a longer message was taken in; nothing to handle yet.
    Fragment,
}

/// A protocol violation and the close code to answer it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: u16,
    pub reason: &'static str,
}

const fn fail(code: u16, reason: &'static str) -> FrameError {
    FrameError { code, reason }
}

/// Per-connection decoding state: only a reassembly buffer for fragmented
/// text messages, empty (no allocation) in the common unfragmented case.
#[derive(Debug, Default)]
pub struct Decoder {
    fragments: Vec<u8>,
    in_message: bool,
    /// The last call returned the reassembled message; free it on the next.
    delivered: bool,
}

impl Decoder {
    /// Decodes one frame from the start of `buf`. Returns what it carried and
    /// the bytes it used, `Ok(None)` when `buf` holds no complete frame, or
    /// the error to close with. `max_message` caps frames and reassembled
    /// messages alike.
    pub fn decode<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        max_message: usize,
    ) -> Result<Option<(Inbound<'a>, usize)>, FrameError> {
        if self.delivered {
            self.fragments = Vec::new();
            self.delivered = false;
        }
        let mut cursor = Cursor::new(&*buf);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(_) => return Err(fail(1002, "invalid opcode")),
        };
        let start = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(fail(1002, "reserved bits set without an extension"));
        }
        let Some(mask) = header.mask else {
            return Err(fail(1002, "client frames must be masked"));
        };
        let is_control = matches!(header.opcode, OpCode::Control(_));
        if is_control && (len > 125 || !header.is_final) {
            return Err(fail(
                1002,
                "control frames must be final and at most 125 bytes",
            ));
        }
        if len > max_message as u64 {
            return Err(fail(1009, "message too big"));
        }
        let end = start + len as usize;
        if buf.len() < end {
            return Ok(None);
        }
        let payload = &mut buf[start..end];
        unmask(payload, mask);
        let inbound = match header.opcode {
            OpCode::Control(Control::Ping) => Inbound::Ping(payload),
            OpCode::Control(Control::Pong) => Inbound::Pong,
            OpCode::Control(Control::Close) => Inbound::Close(parse_close(payload)?),
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return Err(fail(1002, "invalid opcode"))
            }
            OpCode::Data(Data::Text) | OpCode::Data(Data::Binary) if self.in_message => {
                return Err(fail(1002, "new message before the fragmented one ended"))
            }
            OpCode::Data(Data::Binary) => {
                return Err(fail(1003, "binary messages are not supported"))
            }
            OpCode::Data(Data::Continue) if !self.in_message => {
                return Err(fail(1002, "continuation frame without a message"))
            }
            OpCode::Data(Data::Text) if header.is_final => {
                if std::str::from_utf8(payload).is_err() {
                    return Err(fail(1007, "text message is not valid UTF-8"));
                }
                Inbound::Text(payload)
            }
            OpCode::Data(_) => {
                if self.fragments.len() + payload.len() > max_message {
                    return Err(fail(1009, "message too big"));
                }
                self.fragments.extend_from_slice(payload);
                self.in_message = !header.is_final;
                if self.in_message {
                    Inbound::Fragment
                } else {
                    if std::str::from_utf8(&self.fragments).is_err() {
                        return Err(fail(1007, "text message is not valid UTF-8"));
                    }
                    self.delivered = true;
                    Inbound::Text(&mut self.fragments[..])
                }
            }
        };
        Ok(Some((inbound, end)))
    }
}

/// Reads a close frame's payload: empty, or a valid code plus UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(fail(1002, "close frame with a 1-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(fail(1002, "invalid close code"));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(fail(1007, "close reason is not valid UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

/// XORs a client frame's payload with its 4-byte mask, eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_encoded_takes_back_exactly_one_text_frame() {
        for n in [0, 5, 125, 126, 70_000] {
            let f = Frame::text(&vec![b'x'; n]);
            assert_eq!(Frame::from_encoded(f.bytes().clone()), Some(f.clone()));
            // Truncated, padded, masked or another opcode: refused.
            let b = f.bytes();
            assert_eq!(Frame::from_encoded(b.slice(..b.len() - 1)), None);
            let mut longer = b.to_vec();
            longer.push(0);
            assert_eq!(Frame::from_encoded(Bytes::from(longer)), None);
        }
        let masked = Bytes::from(client_frame(0x81, b"hi"));
        assert_eq!(Frame::from_encoded(masked), None);
        assert_eq!(Frame::from_encoded(Frame::pong(b"p").bytes().clone()), None);
        assert_eq!(Frame::from_encoded(Bytes::new()), None);
        assert_eq!(Frame::from_encoded(Bytes::from_static(b"\x01\x02hi")), None);
        // A 64-bit length near 2^64 (found by the fuzzer): refused, no overflow.
        let mut wrap = vec![0x81, 127];
        wrap.extend_from_slice(&(u64::MAX - 9).to_be_bytes());
        assert_eq!(Frame::from_encoded(Bytes::from(wrap)), None);
    }

    /// Encodes a client (masked) frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn encodes_server_frames_unmasked_with_the_shortest_length() {
        let f = Frame::text(b"hi");
        assert_eq!(f.bytes().as_ref(), &[0x81, 2, b'h', b'i']);
        assert_eq!(f.payload(), b"hi");
        let big = vec![b'x'; 300];
        let f = Frame::text(&big);
        assert_eq!(&f.bytes()[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(f.len(), 304);
        let huge = vec![b'x'; 70_000];
        let f = Frame::text(&huge);
        assert_eq!(&f.bytes()[..2], &[0x81, 127]);
        assert_eq!(&f.bytes()[2..10], &70_000u64.to_be_bytes());
        assert_eq!(f.payload().len(), 70_000);
    }

    #[test]
    fn encodes_close_and_pong() {
        let f = Frame::close(4001, "nope");
        assert_eq!(
            f.bytes().as_ref(),
            &[0x88, 6, 0x0f, 0xa1, b'n', b'o', b'p', b'e']
        );
        let long = "é".repeat(100);
        let f = Frame::close(4000, &long);
        assert!(f.payload().len() <= 125);
        assert!(std::str::from_utf8(&f.payload()[2..]).is_ok());
        assert_eq!(Frame::pong(b"x").bytes().as_ref(), &[0x8a, 1, b'x']);
    }

    #[test]
    fn decodes_a_masked_text_frame() {
        let mut buf = client_frame(0x81, b"{\"event\":\"x\"}");
        buf.extend_from_slice(&client_frame(0x89, b"p"));
        let mut d = Decoder::default();
        let (msg, used) = d.decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(msg, Inbound::Text(&mut b"{\"event\":\"x\"}".to_vec()[..]));
        let (msg, _) = d.decode(&mut buf[used..], 1024).unwrap().unwrap();
        assert_eq!(msg, Inbound::Ping(b"p"));
    }

    #[test]
    fn waits_for_incomplete_frames() {
        let full = client_frame(0x81, &[b'a'; 200]);
        let mut d = Decoder::default();
        for cut in [0, 1, 3, 7, 100, full.len() - 1] {
            let mut part = full[..cut].to_vec();
            assert_eq!(d.decode(&mut part, 1024).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn reassembles_fragments() {
        let mut buf = client_frame(0x01, b"hel");
        buf.extend(client_frame(0x8a, b""));
        buf.extend(client_frame(0x00, b"lo "));
        buf.extend(client_frame(0x80, b"you"));
        let mut d = Decoder::default();
        let mut pos = 0;
        let mut seen = Vec::new();
        while pos < buf.len() {
            let (msg, used) = d.decode(&mut buf[pos..], 1024).unwrap().unwrap();
            seen.push(match msg {
                Inbound::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                other => format!("{other:?}"),
            });
            pos += used;
        }
        assert_eq!(seen, vec!["Fragment", "Pong", "Fragment", "hello you"]);
        // The reassembly buffer is freed once the message was handled.
        let mut ping = client_frame(0x89, b"");
        d.decode(&mut ping, 1024).unwrap();
        assert_eq!(d.fragments.capacity(), 0);
    }

    #[test]
    fn refuses_with_rfc_codes() {
        let code = |bytes: Vec<u8>, max: usize| {
            let mut bytes = bytes;
            Decoder::default().decode(&mut bytes, max).unwrap_err().code
        };
        assert_eq!(code(client_frame(0x82, b"bin"), 1024), 1003);
        assert_eq!(code(client_frame(0x81, &[b'a'; 2000]), 1024), 1009);
        assert_eq!(code(client_frame(0x81, &[0xff, 0xfe]), 1024), 1007);
        assert_eq!(code(client_frame(0xc1, b"x"), 1024), 1002); // rsv1
        assert_eq!(code(client_frame(0x80, b"x"), 1024), 1002); // continuation first
        assert_eq!(code(client_frame(0x83, b"x"), 1024), 1002); // reserved opcode
        assert_eq!(code(client_frame(0x09, b"x"), 1024), 1002); // fragmented ping
        assert_eq!(code(client_frame(0x89, &[0; 126]), 1024), 1002); // long ping
        assert_eq!(code(client_frame(0x88, &[0x03]), 1024), 1002); // 1-byte close
        assert_eq!(code(client_frame(0x88, &[0x03, 0xec]), 1024), 1002); // code 1004
        assert_eq!(code(vec![0x81, 0x01, b'x'], 1024), 1002); // unmasked
        let mut two = client_frame(0x01, b"a");
        two.extend(client_frame(0x81, b"b"));
        let mut d = Decoder::default();
        let (_, used) = d.decode(&mut two, 1024).unwrap().unwrap();
        assert_eq!(d.decode(&mut two[used..], 1024).unwrap_err().code, 1002);
        // Fragments that add up past the cap.
        let mut d = Decoder::default();
        let mut a = client_frame(0x01, &[b'a'; 600]);
        d.decode(&mut a, 1024).unwrap();
        let mut b = client_frame(0x80, &[b'a'; 600]);
        assert_eq!(d.decode(&mut b, 1024).unwrap_err().code, 1009);
    }

    #[test]
    fn reads_close_codes() {
        let mut c = client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
        assert_eq!(
            Decoder::default().decode(&mut c, 1024).unwrap().unwrap().0,
            Inbound::Close(Some(1000))
        );
        let mut c = client_frame(0x88, b"");
        assert_eq!(
            Decoder::default().decode(&mut c, 1024).unwrap().unwrap().0,
            Inbound::Close(None)
        );
    }

    #[test]
    fn unmask_matches_bytewise_xor() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..37).collect();
        let mut fast = data.clone();
        unmask(&mut fast, mask);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}
