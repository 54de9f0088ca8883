//! Building HTTP responses: JSON bodies, status lines, keep-alive.

use crate::errors::ApiError;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Further header lines, each ending in `\r\n` (usually empty).
    pub headers: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: "",
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: "",
            body: body.as_bytes().to_vec(),
        }
    }

    /// `{"error": "..."}` with the refusal's status.
    pub fn error(e: &ApiError) -> Response {
        let mut body = b"{\"error\":".to_vec();
        crate::json::push_json_str(&mut body, &e.to_string());
        body.push(b'}');
        Response::json(e.status(), body)
    }

    /// Appends the encoded response to `out`.
    pub fn encode(&self, keep_alive: bool, out: &mut Vec<u8>) {
        out.reserve(96 + self.content_type.len() + self.headers.len() + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, self.status as usize);
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        push_decimal(out, self.body.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.headers.as_bytes());
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// Appends `n` in decimal digits.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_errors_as_json() {
        let mut out = Vec::new();
        Response::error(&ApiError::NotFound("no app \"x\"".into())).encode(false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"no app \\\"x\\\"\"}"));
    }

    #[test]
    fn encodes_a_keep_alive_response_with_its_length() {
        for body in ["", "{}", &"x".repeat(12345)] {
            let mut out = b"kept".to_vec();
            Response::json(200, body).encode(true, &mut out);
            let want = format!(
                "keptHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
