//! The web console (`console/`, a TypeScript app built with Vite), embedded in the binary and
//! served over HTTP next to the gRPC-Web API it calls
//! ([`kordon_runtime::server::GrpcServer::grpc_web`] in the runtime crate).
//!
//! - `/` and `/index.html`: the app's page, revalidated on every load (`no-cache`), so a new
//!   binary's console is picked up at once.
//! - `/assets/…`: Vite's content-hashed files, cached for a year (`immutable`).
//! - A gzip copy is sent to clients that accept it.
//! - Every response carries a Content-Security-Policy that allows scripts only from this
//!   origin, and forbids framing.
//!
//! A binary built without `console/dist` (plain `cargo build` before `scripts/console.sh`)
//! answers `/` with a page saying how to build the console.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// One embedded file of the built console.
pub struct Asset {
    /// The URL path, e.g. `/assets/index-3f2a1c.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// The same file, gzip-compressed, when the build made a copy.
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Scripts and styles from this origin only; footage, thumbnails and playlists may come from
/// object storage (pre-signed URLs on another origin), so media, images and fetches may too.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https: http:; \
    media-src 'self' blob: https: http:; connect-src 'self' blob: https: http:; \
    worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Whether this binary carries a built console.
pub fn is_built() -> bool {
    find("/index.html").is_some()
}

/// The embedded asset at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Routes for every embedded file, `/` for the app's page. Merge into an HTTP router that has
/// no route at those paths.
pub fn router() -> Router {
    let mut router = Router::new().route("/", get(|h: HeaderMap| async move { page(&h) }));
    for asset in ASSETS {
        router = router.route(
            asset.path,
            get(move |h: HeaderMap| async move { respond(asset, &h) }),
        );
    }
    router
}

fn page(headers: &HeaderMap) -> Response {
    match find("/index.html") {
        Some(index) => respond(index, headers),
        None => (
            StatusCode::NOT_FOUND,
            secure_headers(HeaderMap::new()),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This kordon binary was built without the web console (console/dist was missing \
             when it was compiled).\nBuild the console and then kordon: bash scripts/console.sh \
             && cargo build -p kordon\n(scripts/standalone.sh and scripts/test.sh do both.)\n",
        )
            .into_response(),
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            // `gzip;q=0` refuses it.
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn secure_headers(mut h: HeaderMap) -> HeaderMap {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h
}

fn respond(asset: &'static Asset, request: &HeaderMap) -> Response {
    let mut h = secure_headers(HeaderMap::new());
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset.path.starts_with("/assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let body = match asset.gzip {
        Some(gz) if accepts_gzip(request) => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz
        }
        _ => asset.body,
    };
    (StatusCode::OK, h, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_accept_it() {
        assert!(accepts_gzip(&headers("gzip, deflate, br")));
        assert!(accepts_gzip(&headers("br;q=1.0, gzip;q=0.8")));
        assert!(accepts_gzip(&headers("*")));
        assert!(!accepts_gzip(&headers("gzip;q=0")));
        assert!(!accepts_gzip(&headers("br, identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn the_page_is_served_with_a_content_security_policy() {
        let resp = router()
            .oneshot(
                http::Request::get("/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let csp = resp
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .expect("CSP header");
        assert!(csp.to_str().unwrap().contains("script-src 'self'"));
        if is_built() {
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache");
        } else {
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        }
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_gzipped_on_request() {
        let Some(asset) = ASSETS
            .iter()
            .find(|a| a.path.starts_with("/assets/") && a.gzip.is_some())
        else {
            // Without a console build there is nothing to serve; `scripts/test.sh` builds it.
            assert!(!is_built(), "a built console has gzipped assets");
            return;
        };
        let resp = router()
            .oneshot(
                http::Request::get(asset.path)
                    .header(header::ACCEPT_ENCODING, "gzip")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(
            resp.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }
}
