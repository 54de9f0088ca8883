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
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
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

    #[test]
    fn refuses_deep_nesting_and_accepts_reasonable_json() {
        let mut deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
        assert!(parse(&mut deep).unwrap_err().contains("nested deeper"));
        let mut ok = format!("{}1{}", "[".repeat(64), "]".repeat(64)).into_bytes();
        assert!(parse(&mut ok).is_ok());
        // Brackets inside strings do not count.
        let mut s =
            format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(1000), "{".repeat(1000)).into_bytes();
        assert!(parse(&mut s).is_ok());
    }
}
