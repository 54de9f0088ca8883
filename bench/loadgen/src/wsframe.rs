//! Minimal RFC 6455 framing shared by the load generator (client side) and
//! the floor server (server side).

#![allow(dead_code)]

/// One frame found at the start of a buffer.
pub struct RawFrame {
    /// First header byte: FIN bit and opcode.
    pub b0: u8,
    /// Payload bounds within the buffer.
    pub start: usize,
    pub end: usize,
    pub mask: Option<[u8; 4]>,
}

impl RawFrame {
    pub fn opcode(&self) -> u8 {
        self.b0 & 0x0f
    }
    pub fn fin(&self) -> bool {
        self.b0 & 0x80 != 0
    }
}

/// Parses the frame at the start of `b`; `None` until it is complete.
pub fn parse(b: &[u8]) -> Option<RawFrame> {
    if b.len() < 2 {
        return None;
    }
    let b0 = b[0];
    let b1 = b[1];
    let mut len = (b1 & 0x7f) as u64;
    let mut pos = 2;
    if len == 126 {
        if b.len() < 4 {
            return None;
        }
        len = u16::from_be_bytes([b[2], b[3]]) as u64;
        pos = 4;
    } else if len == 127 {
        if b.len() < 10 {
            return None;
        }
        len = u64::from_be_bytes(b[2..10].try_into().unwrap());
        pos = 10;
    }
    let mask = if b1 & 0x80 != 0 {
        if b.len() < pos + 4 {
            return None;
        }
        let m = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    if b.len() < end {
        return None;
    }
    Some(RawFrame {
        b0,
        start: pos,
        end,
        mask,
    })
}

/// XORs `data` with the mask, in place.
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends a frame with the given opcode and payload, masked when `mask` is given.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len < 65536 {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            let at = out.len();
            out.extend_from_slice(payload);
            unmask(&mut out[at..], m);
        }
        None => out.extend_from_slice(payload),
    }
}
