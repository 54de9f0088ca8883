//! JSON in and out: bounded parsing for everything clients and backends
//! send, and the string-literal writer every hand-built message uses.
//!
//! simd-json builds values recursively, so a deeply nested document could
//! overflow the stack. [`parse`] first scans the bytes (skipping strings) and
//! refuses anything nested deeper than [`MAX_DEPTH`], then parses in place.
//!
//! The parser's working buffers (an aligned copy of the input, the
//! structural index, a string buffer) are kept per thread, so a shard
//! parsing its messages allocates them once, not per message; documents
//! over [`REUSE_LIMIT`] get buffers of their own, so no thread keeps a large
//! one.

use simd_json::{BorrowedValue, Buffers};
use std::cell::RefCell;

/// Deepest nesting of arrays and objects accepted anywhere.
pub const MAX_DEPTH: usize = 64;
/// Largest document parsed with the thread's kept buffers.
pub const REUSE_LIMIT: usize = 16 * 1024;

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::new(REUSE_LIMIT));
}

/// Parses `bytes` in place after checking the nesting depth.
pub fn parse(bytes: &mut [u8]) -> Result<BorrowedValue<'_>, String> {
    if depth_exceeds(bytes, MAX_DEPTH) {
        return Err(format!("JSON is nested deeper than {MAX_DEPTH} levels"));
    }
    if bytes.len() > REUSE_LIMIT {
        return simd_json::to_borrowed_value(bytes).map_err(|e| e.to_string());
    }
    BUFFERS
        .with(|buffers| match buffers.try_borrow_mut() {
            Ok(mut buffers) => {
                simd_json::value::borrowed::to_value_with_buffers(bytes, &mut buffers)
            }
            // Parsing inside a parse (never today): fresh buffers.
            Err(_) => simd_json::to_borrowed_value(bytes),
        })
        .map_err(|e| e.to_string())
}

/// True when arrays/objects nest deeper than `max` (outside strings).
fn depth_exceeds(bytes: &[u8], max: usize) -> bool {
    // Nesting never exceeds the number of opening brackets: a document with
    // few of them (every trigger body) needs no walk through its strings.
    let opening = bytes.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if opening <= max {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Appends `s` as a JSON string literal (with quotes).
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let run = plain_run(&bytes[start..]);
        out.extend_from_slice(&bytes[start..start + run]);
        let i = start + run;
        let Some(&b) = bytes.get(i) else {
            break;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.push(b'"');
}

/// How many bytes at the start of `bytes` go into a JSON string as they
/// are (no quote, backslash or control byte), looked at eight at a time.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    for chunk in bytes.chunks_exact(8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A high bit for each byte below 0x20, equal to '"', or equal to
        // '\\' (the classic "has a zero byte" test on shifted words; bytes
        // of 0x80 and above never set one).
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = (x ^ (ONES * b'"' as u64)).wrapping_sub(ONES) & !(x ^ (ONES * b'"' as u64));
        let backslash =
            (x ^ (ONES * b'\\' as u64)).wrapping_sub(ONES) & !(x ^ (ONES * b'\\' as u64));
        if (control | quote | backslash) & HIGHS != 0 {
            break;
        }
        n += 8;
    }
    n + bytes[n..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .unwrap_or(bytes.len() - n)
}

/// A JSON string literal of `s`, as a `String`.
pub fn json_str(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_str("plain"), "\"plain\"");
        assert_eq!(json_str("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let tricky = "{\"x\":\"</script>\\u2028\"}\t";
        let parsed: String = serde_json::from_str(&json_str(tricky)).unwrap();
        assert_eq!(parsed, tricky);
    }

    /// The escaping agrees with serde_json on every byte value at every
    /// position of strings of several lengths (the eight-byte scan's edges).
    #[test]
    fn escapes_each_byte_where_serde_json_does() {
        for len in [1, 7, 8, 9, 15, 16, 17, 33] {
            for at in 0..len {
                for b in 0u8..=0x7f {
                    let mut raw = vec![b'a'; len];
                    raw[at] = b;
                    let s = String::from_utf8(raw).unwrap();
                    let parsed: String = serde_json::from_str(&json_str(&s)).unwrap();
                    assert_eq!(parsed, s, "byte {b:#x} at {at} of {len}");
                }
            }
        }
        let multi = "é€😀\u{7f}\u{80}\u{ff}x\"y".repeat(3);
        let parsed: String = serde_json::from_str(&json_str(&multi)).unwrap();
        assert_eq!(parsed, multi);
    }

    #[test]
    fn refuses_deep_nesting_and_accepts_reasonable_json() {
        let mut deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
        assert!(parse(&mut deep).unwrap_err().contains("nested deeper"));
        let mut ok = format!("{}1{}", "[".repeat(64), "]".repeat(64)).into_bytes();
        assert!(parse(&mut ok).is_ok());
        // Brackets inside strings do not count, whether few or many.
        let mut deep_enough = format!("{}1{}", "[".repeat(65), "]".repeat(65)).into_bytes();
        assert!(parse(&mut deep_enough)
            .unwrap_err()
            .contains("nested deeper"));
        let mut s = format!("{{\"a\":\"{}\",\"b\":[[1]]}}", "[".repeat(62)).into_bytes();
        assert!(parse(&mut s).is_ok());
        let mut s =
            format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(1000), "{".repeat(1000)).into_bytes();
        assert!(parse(&mut s).is_ok());
    }
}
