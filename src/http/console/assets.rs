//! The console page and its assets, built into the binary: no CDN, no
//! build step. uPlot (MIT, version in `assets/uPlot.VERSION`) draws the
//! charts; the page's own script is `assets/console.js`. Every response
//! carries a Content-Security-Policy that allows only this origin's
//! scripts, styles and fetches.

use super::super::response::Response;

const PAGE: &str = include_str!("assets/console.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");

/// Headers of every asset: scripts, styles and fetches from this origin
/// only, no framing, no sniffing, no caching of a page that may change
/// with the binary.
const HEADERS: &str = "Content-Security-Policy: default-src 'none'; script-src 'self'; \
style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; \
frame-ancestors 'none'; base-uri 'none'\r\nX-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\nCache-Control: no-store\r\n";

/// The asset at `path`, if there is one.
pub fn find(path: &str) -> Option<Response> {
    let (content_type, text) = match path {
        "/console" | "/console/" => ("text/html; charset=utf-8", PAGE),
        "/console/console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/console/console.css" => ("text/css; charset=utf-8", STYLE),
        "/console/uPlot.iife.min.js" => ("text/javascript; charset=utf-8", UPLOT_JS),
        "/console/uPlot.min.css" => ("text/css; charset=utf-8", UPLOT_CSS),
        _ => return None,
    };
    let mut r = Response::text(200, text);
    r.content_type = content_type;
    r.headers = HEADERS;
    Some(r)
}
