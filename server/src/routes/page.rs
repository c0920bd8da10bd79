//! The page at `/`: trunk's build (`dist/`), its files served precompressed where `scripts/build-page` wrote
//! `.gz` beside them; or, when the page is not built, a note saying how to build it rather than a blank root.

use std::path::PathBuf;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use tower_http::services::ServeDir;

/// The built page and how it is served.
#[derive(Debug, Clone)]
pub struct Page {
    /// trunk's output (`dist/`), with `scripts/build-page`'s additions.
    pub dir: PathBuf,
    /// Whether the page's files are sent with the headers that make it cross-origin isolated (`COOP:
    /// same-origin`, `COEP: require-corp`), which a browser requires before wasm may share memory between
    /// threads: the page then encodes on a thread per core. Everything the page loads is on this server. Off,
    /// the page can be embedded in other sites' frames, and encodes on one thread.
    pub cross_origin_isolated: bool,
}

/// Routes every path the API does not answer to the page.
pub fn serve(router: Router, page: Option<Page>) -> Router {
    match page {
        Some(Page {
            dir,
            cross_origin_isolated,
        }) => router.fallback_service(
            tower::ServiceBuilder::new()
                .option_layer(cross_origin_isolated.then(|| middleware::from_fn(isolate)))
                .layer(middleware::from_fn(cache_policy))
                .service(ServeDir::new(dir).precompressed_gzip()),
        ),
        None => router.fallback(not_built),
    }
}

/// Files whose names carry a hash of their contents never change: browsers keep them. The others (index.html,
/// the worker's files, which must keep their names) are revalidated, so that a new build reaches browsers.
async fn cache_policy(request: Request, next: Next) -> Response {
    let immutable = is_content_hashed(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() {
        let policy = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

/// The headers that make the page cross-origin isolated (see [`Page::cross_origin_isolated`]), on each of its
/// files: the document's make it isolated, and its workers' scripts carry the same policy.
async fn isolate(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-embedder-policy"),
        HeaderValue::from_static("require-corp"),
    );
    response
}

/// Whether a file is named as trunk names what it hashes: `name-<16 hex digits>[_bg].ext`.
fn is_content_hashed(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sound2vision: the page is not built</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:42rem;padding:0 1rem;line-height:1.5}
code{background:#eee;padding:0 .25em}</style></head>
<body>
<h1>The page is not built</h1>
<p>This server answers the API (<a href="/api/openapi.json">/api/openapi.json</a>), but it has no page to show:
no <code>dist/</code> folder was found.</p>
<p>From the checkout, <code>scripts/serve</code> builds the page and starts the server with it. To build it
alone, run <code>scripts/build-page</code>, then start <code>s2v-server --page dist</code>.</p>
</body>
</html>
"#;

/// The note at the root; anything else the API does not know is not found.
async fn not_built(uri: Uri) -> Response {
    if uri.path() == "/" || uri.path() == "/index.html" {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            Html(NOT_BUILT),
        )
            .into_response()
    } else {
        crate::error::ApiError::not_found(format!("no {} here", uri.path())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn fetch(page: Page, path: &str) -> Response {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        serve(Router::new(), Some(page))
            .oneshot(request)
            .await
            .unwrap()
    }

    fn built_page() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        std::fs::create_dir(dir.path().join("threads")).unwrap();
        std::fs::write(dir.path().join("threads/encoder.js"), "start();").unwrap();
        dir
    }

    #[tokio::test]
    async fn the_page_and_its_workers_are_cross_origin_isolated() {
        let dir = built_page();
        for path in ["/", "/threads/encoder.js"] {
            let page = Page {
                dir: dir.path().into(),
                cross_origin_isolated: true,
            };
            let response = fetch(page, path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert_eq!(
                headers["cross-origin-opener-policy"], "same-origin",
                "{path}"
            );
            assert_eq!(
                headers["cross-origin-embedder-policy"], "require-corp",
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn isolation_can_be_turned_off() {
        let dir = built_page();
        let page = Page {
            dir: dir.path().into(),
            cross_origin_isolated: false,
        };
        let response = fetch(page, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            !response
                .headers()
                .contains_key("cross-origin-opener-policy")
        );
        assert!(
            !response
                .headers()
                .contains_key("cross-origin-embedder-policy")
        );
    }

    #[test]
    fn only_trunks_hashed_names_are_kept_forever() {
        assert!(is_content_hashed("/s2v-web-abfd6be67039d742.js"));
        assert!(is_content_hashed("/s2v-web-abfd6be67039d742_bg.wasm"));
        assert!(is_content_hashed("/style-dba6caf80ad703e1.css"));
        assert!(!is_content_hashed("/index.html"));
        assert!(!is_content_hashed("/s2v-encoder_bg.wasm"));
        assert!(!is_content_hashed("/s2v-encoder_loader.js"));
        assert!(!is_content_hashed("/"));
    }
}
