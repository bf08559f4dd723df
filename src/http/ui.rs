//! The management web UI: a single-page app in plain JavaScript (ES
//! modules, no build step) in `src/http/ui/`, embedded in the binary with
//! `include_bytes!` and served here without authentication: `GET /` (and
//! `/index.html`) is the page, `GET /ui/<file>` its scripts and styles.
//!
//! The page does what RabbitMQ's management UI does: it logs in with HTTP
//! basic auth against `/api/whoami`, keeps the credentials in
//! `sessionStorage` and sends the `Authorization` header on every call to
//! the API; hash routes (`#/queues`, `#/queues/%2F/q1`, …) pick the page.
//! Every answer here has an ETag (a hash of the file) and `Cache-Control:
//! no-cache`, so a browser revalidates and gets a 304 until the binary
//! changes; the page itself carries a Content-Security-Policy that allows
//! only its own scripts and styles.
//!
//! Files: `index.html`, `style.css`, and `js/`: `app.js` (router, layout,
//! login), `api.js` (fetch, errors, DOM helpers), `charts.js` (SVG line and
//! bar charts), `table.js` (RabbitMQ's paginated, sortable lists), and one
//! `pages-*.js` per group of pages.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::ApiError;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("ui/", $path)),
        }
    };
}

const INDEX: Asset = asset!("index.html", HTML);

/// Everything under `/ui/`.
const ASSETS: &[Asset] = &[
    asset!("style.css", CSS),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/table.js", JS),
    asset!("js/pages-overview.js", JS),
    asset!("js/pages-connections.js", JS),
    asset!("js/pages-exchanges.js", JS),
    asset!("js/pages-queues.js", JS),
    asset!("js/pages-admin.js", JS),
];

/// The page's policy: its own scripts, styles and API only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The UI's routes (no authentication: the page logs in by itself).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/ui/{*path}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => serve(a, &headers),
        None => ApiError::not_found().into_response(),
    }
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", fnv1a(asset.body));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let status = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut r = if fresh {
        status.into_response()
    } else {
        (status, asset.body).into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type == HTML {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

/// 64-bit FNV-1a: the files' ETags.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_page_imports_is_served() {
        // Each `from './x.js'` in a script and each `/ui/…` in index.html
        // names an embedded file.
        let mut named = Vec::new();
        for a in ASSETS.iter().chain(std::iter::once(&INDEX)) {
            let text = std::str::from_utf8(a.body).unwrap();
            for (i, _) in text.match_indices("from './") {
                let rest = &text[i + "from './".len()..];
                named.push(format!("js/{}", &rest[..rest.find('\'').unwrap()]));
            }
            for (i, _) in text.match_indices("\"/ui/") {
                let rest = &text[i + "\"/ui/".len()..];
                named.push(rest[..rest.find('"').unwrap()].to_string());
            }
        }
        assert!(named.len() > ASSETS.len() / 2, "{named:?}");
        for n in named {
            assert!(ASSETS.iter().any(|a| a.path == n), "{n} is not embedded");
        }
    }

    #[test]
    fn etag_changes_with_content() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
