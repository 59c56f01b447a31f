//! The front end carried inside the binary: the WASM, JS and CSS that
//! cargo-leptos builds into `target/site`, the `public/` assets, and the
//! brotli and gzip copies `cargo leptos build --release --precompress`
//! makes of each. The binary's `main.rs` embeds that directory (rust-embed:
//! in a release build the bytes are in the executable; a debug build reads
//! the directory) and hands a lookup to [`install`], so copying the one
//! file to a server is enough. `SITE_ROOT` still serves a directory instead
//! (development).
//!
//! Caching: the page names the WASM, JS and CSS by a hash of their
//! content (`/pkg/redis-chat.<hash>.wasm`, through Leptos's `output_name`),
//! so those answers are `immutable` for a year and a new build is new
//! URLs; anything else is cached for five minutes. Every answer has a
//! strong `ETag` (of the bytes sent: each encoding has its own) and a
//! matching `If-None-Match` gets 304.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use std::borrow::Cow;
use std::sync::OnceLock;

/// One embedded file.
pub struct Asset {
    pub data: Cow<'static, [u8]>,
    pub sha256: [u8; 32],
    pub mime: Cow<'static, str>,
}

/// Finds an embedded file by its path in the site (`pkg/redis-chat.wasm`).
pub type Lookup = fn(&str) -> Option<Asset>;

static LOOKUP: OnceLock<Lookup> = OnceLock::new();

/// The front end of this binary (called once by `main`, before serving).
pub fn install(lookup: Lookup) {
    let _ = LOOKUP.set(lookup);
}

/// The base name of the front end's files (`pkg/<name>.wasm` and so on).
const OUTPUT_NAME: &str = "redis-chat";
/// The files the page names by content hash.
const HASHED: [&str; 3] = ["js", "wasm", "css"];

/// An embedded front end, ready to serve.
#[derive(Clone)]
pub struct EmbeddedSite {
    lookup: Lookup,
    /// `redis-chat.<hash>`: the name the page uses for the hashed files.
    output_name: String,
}

impl EmbeddedSite {
    /// The installed front end, if the binary has one with a WASM in it.
    pub fn installed() -> Option<Self> {
        let lookup = *LOOKUP.get()?;
        let hash = content_hash(lookup)?;
        Some(Self {
            lookup,
            output_name: format!("{OUTPUT_NAME}.{hash}"),
        })
    }

    /// The name to give Leptos as `output_name`.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// The answer for `path` if it is an embedded file (GET and HEAD only).
    pub fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let path = path.strip_prefix('/')?;
        let (file, immutable) = match self.unhashed(path) {
            Some(file) => (file, true),
            None => (path.to_string(), false),
        };
        let plain = (self.lookup)(&file)?;
        let (asset, encoding) = accepted_encodings(headers)
            .into_iter()
            .find_map(|(encoding, suffix)| {
                (self.lookup)(&format!("{file}.{suffix}")).map(|a| (a, Some(encoding)))
            })
            .unwrap_or((plain, None));
        let mime = match encoding {
            // The compressed copy's own type would be application/gzip.
            Some(_) => mime_of(&file, self.lookup),
            None => asset.mime.to_string(),
        };
        let etag = format!("\"{}\"", hex(&asset.sha256[..12]));
        let cache = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=300"
        };
        let not_modified = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut response = Response::builder()
            .header(header::ETAG, &etag)
            .header(header::CACHE_CONTROL, cache)
            .header(header::VARY, "Accept-Encoding");
        if not_modified {
            return response
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .ok();
        }
        response = response
            .header(header::CONTENT_TYPE, mime)
            .header(header::CONTENT_LENGTH, asset.data.len());
        if let Some(encoding) = encoding {
            response = response.header(header::CONTENT_ENCODING, encoding);
        }
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            match asset.data {
                Cow::Borrowed(bytes) => Body::from(bytes),
                Cow::Owned(bytes) => Body::from(bytes),
            }
        };
        response.body(body).ok()
    }

    /// `pkg/redis-chat.<hash>.wasm` → `pkg/redis-chat.wasm` (also the
    /// `_bg.wasm` name Leptos uses when not built by cargo-leptos).
    fn unhashed(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix("pkg/")?.strip_prefix(&self.output_name)?;
        let ext = rest.strip_prefix('.').or(rest.strip_prefix("_bg."))?;
        HASHED
            .contains(&ext)
            .then(|| format!("pkg/{OUTPUT_NAME}.{ext}"))
    }
}

/// A short hash of the hashed files' contents (absent without a WASM).
fn content_hash(lookup: Lookup) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut found_wasm = false;
    for ext in HASHED {
        if let Some(asset) = lookup(&format!("pkg/{OUTPUT_NAME}.{ext}")) {
            found_wasm |= ext == "wasm";
            hasher.update(asset.sha256);
        }
    }
    found_wasm.then(|| hex(&hasher.finalize()[..8]))
}

fn mime_of(file: &str, lookup: Lookup) -> String {
    lookup(file)
        .map(|a| a.mime.to_string())
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// The encodings the client takes, best first, with their file suffixes:
/// brotli before gzip; a `q=0` refuses one.
fn accepted_encodings(headers: &HeaderMap) -> Vec<(&'static str, &'static str)> {
    let accepted = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (!refused).then_some(name)
        })
        .collect::<Vec<_>>();
    [("br", "br"), ("gzip", "gz")]
        .into_iter()
        .filter(|(name, _)| accepted.iter().any(|a| a == name))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(bytes: &'static [u8], mime: &'static str) -> Asset {
        use sha2::{Digest, Sha256};
        Asset {
            data: Cow::Borrowed(bytes),
            sha256: Sha256::digest(bytes).into(),
            mime: Cow::Borrowed(mime),
        }
    }

    fn lookup(path: &str) -> Option<Asset> {
        match path {
            "pkg/redis-chat.wasm" => Some(asset(b"wasm wasm wasm wasm", "application/wasm")),
            "pkg/redis-chat.wasm.br" => Some(asset(b"br", "application/octet-stream")),
            "pkg/redis-chat.wasm.gz" => Some(asset(b"gz", "application/gzip")),
            "pkg/redis-chat.js" => Some(asset(b"js", "text/javascript")),
            "favicon.svg" => Some(asset(b"<svg/>", "image/svg+xml")),
            _ => None,
        }
    }

    fn site() -> EmbeddedSite {
        EmbeddedSite {
            lookup,
            output_name: format!("redis-chat.{}", content_hash(lookup).unwrap()),
        }
    }

    fn get(site: &EmbeddedSite, path: &str, accept: &str) -> Option<Response> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, accept.parse().unwrap());
        site.respond(&Method::GET, path, &headers)
    }

    fn header_of(r: &Response, name: header::HeaderName) -> &str {
        r.headers().get(name).map_or("", |v| v.to_str().unwrap())
    }

    #[test]
    fn hashed_names_are_immutable_and_encodings_follow_accept_encoding() {
        let site = site();
        let wasm = format!("/pkg/{}.wasm", site.output_name());
        let br = get(&site, &wasm, "gzip, deflate, br").unwrap();
        assert_eq!(header_of(&br, header::CONTENT_ENCODING), "br");
        assert_eq!(header_of(&br, header::CONTENT_TYPE), "application/wasm");
        assert!(header_of(&br, header::CACHE_CONTROL).contains("immutable"));
        let gz = get(&site, &wasm, "gzip, br;q=0").unwrap();
        assert_eq!(header_of(&gz, header::CONTENT_ENCODING), "gzip");
        let plain = get(&site, &wasm, "identity").unwrap();
        assert_eq!(header_of(&plain, header::CONTENT_ENCODING), "");
        assert_ne!(
            header_of(&br, header::ETAG),
            header_of(&plain, header::ETAG)
        );
        // The other names are cached briefly.
        let icon = get(&site, "/favicon.svg", "br").unwrap();
        assert_eq!(
            header_of(&icon, header::CACHE_CONTROL),
            "public, max-age=300"
        );
        let old = get(&site, "/pkg/redis-chat.wasm", "").unwrap();
        assert_eq!(
            header_of(&old, header::CACHE_CONTROL),
            "public, max-age=300"
        );
        assert!(get(&site, "/pkg/redis-chat.0000.wasm", "").is_none());
        assert!(get(&site, "/nothing", "").is_none());
    }

    #[test]
    fn a_matching_etag_gets_304_and_other_methods_pass() {
        let site = site();
        let first = get(&site, "/favicon.svg", "").unwrap();
        let etag = header_of(&first, header::ETAG).to_string();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag.parse().unwrap());
        let again = site
            .respond(&Method::GET, "/favicon.svg", &headers)
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(site
            .respond(&Method::POST, "/favicon.svg", &HeaderMap::new())
            .is_none());
    }
}
