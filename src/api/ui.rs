//! The web console's files, embedded at build time (`build.rs` gzips each file of
//! `web-ui/` and names it with an ETag from its content) and served by the API: `/` is the
//! console's page, `/ui/...` its scripts, styles and their third-party parts.
//!
//! Invariants: the page loads nothing from outside the agent (a strict
//! Content-Security-Policy says so to the browser too); every answer carries its content
//! type, `nosniff`, an ETag and `Cache-Control: no-cache` (revalidated, answered 304 while
//! unchanged), gzipped when the browser takes it.

use super::server::{self, Body};
use hyper::Response;
use hyper::header::{self, HeaderValue};

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    pub raw: &'static [u8],
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/web_ui.rs"));

/// What the console's page may load and do: only this agent's own files and API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The asset a `GET` of `path` asks for (`/` is the page).
pub fn find(path: &str) -> Option<&'static Asset> {
    let rel = match path {
        "/" | "/index.html" => "index.html",
        p => p.strip_prefix("/ui/")?,
    };
    ASSETS.iter().find(|a| a.path == rel)
}

/// The answer for `asset`, as the request's headers allow (gzip, 304).
pub fn serve(asset: &'static Asset, headers: &hyper::HeaderMap) -> Response<Body> {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|e| {
                let mut parts = e.split(';');
                parts.next().is_some_and(|n| n.trim() == "gzip")
                    && !parts.any(|q| q.trim().replace(' ', "") == "q=0")
            })
        });
    let mut r = if fresh {
        let mut r = Response::new(server::full(Vec::new()));
        *r.status_mut() = hyper::StatusCode::NOT_MODIFIED;
        r
    } else if gzip && !asset.gzip.is_empty() {
        let mut r = Response::new(server::full(asset.gzip.to_vec()));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(server::full(asset.raw.to_vec()))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_embedded_with_types_and_tags() {
        let page = find("/").expect("index.html embedded");
        assert!(page.content_type.starts_with("text/html"));
        assert!(find("/ui/app.js").is_some_and(|a| a.content_type.starts_with("text/javascript")));
        assert!(find("/ui/vendor/uplot.css").is_some());
        assert!(find("/ui/../Cargo.toml").is_none());
        assert!(find("/etc/passwd").is_none());
        for a in ASSETS {
            assert!(
                a.etag.starts_with('"') && a.etag.ends_with('"'),
                "{}",
                a.path
            );
            let mut d = flate2::read::GzDecoder::new(a.gzip);
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut back).expect("gunzip");
            assert_eq!(back, a.raw, "{}", a.path);
        }
    }

    #[test]
    fn an_unchanged_file_is_answered_304_and_gzip_only_when_taken() {
        let page = find("/").expect("page");
        let mut h = hyper::HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(page.etag));
        assert_eq!(serve(page, &h).status(), 304);
        let mut h = hyper::HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip"),
        );
        let r = serve(page, &h);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        let mut h = hyper::HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0"),
        );
        assert!(
            serve(page, &h)
                .headers()
                .get(header::CONTENT_ENCODING)
                .is_none()
        );
    }
}
