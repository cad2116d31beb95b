//! Playback over HTTP: HLS playlists and the media they reference.
//!
//! ```text
//! GET /v1/hls/<site>/<camera>.m3u8?[profile=&]from=&to=&exp=&token=       the playlist
//! GET /v1/hls/<site>/<camera>/<from>.<to>.<exp>.<token>[.<profile>]/<sequence>.mp4
//!                                                            a segment's (or rendition's) bytes
//! GET /v1/evidence/<site>/<bundle>.tar?exp=&token=                an evidence bundle
//! GET /v1/objects/<site>/<object key>?exp=&token=                 a rendition or snapshot
//! ```
//!
//! Both need the token of a URL issued by GetPlaybackUrl or ListRecordings (see
//! [`crate::playback`]); there is no other authorisation here, and the access was logged when
//! the URL was issued. Media honours single `Range` requests (206, `Content-Range`; 416 when
//! unsatisfiable), which HLS players use for `EXT-X-BYTERANGE`. Responses are `no-store` and
//! allow any origin (the token is the credential), so browser players (hls.js) can fetch them.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;

use crate::playback::{ByteRange, Download, PlaybackQuery, parse_path_grant, parse_range};
use crate::service::Storage;
use crate::{StorageError, grpc};

/// The playback router; serve it on the storage HTTP listener.
pub fn router(storage: Storage) -> Router {
    Router::new()
        .route("/v1/hls/{site}/{file}", get(playlist))
        .route("/v1/hls/{site}/{camera}/{grant}/{file}", get(media))
        .route("/v1/evidence/{site}/{file}", get(bundle))
        .route("/v1/objects/{site}/{*key}", get(object))
        .with_state(storage)
}

fn common_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Length, Content-Range, Accept-Ranges"),
    );
}

fn error_response(e: StorageError) -> Response {
    let public = grpc::classify(&e);
    let mut resp = (public.http, format!("{}\n", public.message)).into_response();
    common_headers(resp.headers_mut());
    resp
}

fn bad_query() -> Response {
    error_response(StorageError::BadToken)
}

/// The part of a `size`-byte object a request's `Range` header asks for, with the status to
/// answer; `None` when the range cannot be satisfied (answer [`unsatisfiable`]).
fn requested_range(
    headers: &HeaderMap,
    size: u64,
) -> Option<(Option<std::ops::Range<u64>>, StatusCode)> {
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match parse_range(range_header, size) {
        ByteRange::Full => Some((None, StatusCode::OK)),
        ByteRange::Partial { start, end } => Some((Some(start..end), StatusCode::PARTIAL_CONTENT)),
        ByteRange::Unsatisfiable => None,
    }
}

/// 416 for a `size`-byte object.
fn unsatisfiable(size: u64) -> Response {
    let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    common_headers(resp.headers_mut());
    resp
}

/// A streamed object (or the `range` of it) of `size` bytes as a 200/206 response.
fn object_response(
    body: Body,
    status: StatusCode,
    size: u64,
    range: Option<&std::ops::Range<u64>>,
    content_type: &'static str,
) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.map_or(size, |r| r.end - r.start)),
    );
    if let Some(r) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    common_headers(h);
    resp
}

async fn playlist(
    State(storage): State<Storage>,
    Path((site, file)): Path<(String, String)>,
    query: Result<Query<PlaybackQuery>, QueryRejection>,
) -> Response {
    let Some(camera) = file.strip_suffix(".m3u8") else {
        return error_response(StorageError::NotFound("no such playlist".into()));
    };
    let Ok(Query(q)) = query else {
        return bad_query();
    };
    match storage.playlist(&site, camera, &q).await {
        Ok(text) => {
            let mut resp = text.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            );
            common_headers(resp.headers_mut());
            resp
        }
        Err(e) => error_response(e),
    }
}

async fn media(
    State(storage): State<Storage>,
    Path((site, camera, grant, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(sequence) = file
        .strip_suffix(".mp4")
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return error_response(StorageError::NotFound("no such segment".into()));
    };
    let Some(q) = parse_path_grant(&grant) else {
        return bad_query();
    };
    // The token first: nothing about the segment is revealed to a stranger.
    let grant = match storage.check_playback(&site, &camera, &q) {
        Ok(g) => g,
        Err(e) => return error_response(e),
    };
    // The record's size is what was verified at registration; resolve the range against it
    // before reading, so an unsatisfiable range costs no object-store request.
    let (key, size) = match storage.media_object(&grant, sequence).await {
        Ok(x) => x,
        Err(e) => return error_response(e),
    };
    let Some((get_range, status)) = requested_range(&headers, size) else {
        return unsatisfiable(size);
    };
    let got = match storage.media(&key, get_range.clone()).await {
        Ok(x) => x,
        Err(e) => return error_response(e),
    };
    let metrics = crate::metrics::StorageMetrics::get().media_bytes.clone();
    let stream = got
        .into_stream()
        .inspect_ok(move |chunk| metrics.inc_by(chunk.len() as u64));
    object_response(
        Body::from_stream(stream),
        status,
        size,
        get_range.as_ref(),
        "video/mp4",
    )
}

/// The query of a bundle download URL.
#[derive(Debug, serde::Deserialize)]
struct DownloadQuery {
    exp: i64,
    token: String,
}

async fn bundle(
    State(storage): State<Storage>,
    Path((site, file)): Path<(String, String)>,
    query: Result<Query<DownloadQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = file.strip_suffix(".tar") else {
        return error_response(StorageError::NotFound("no such bundle".into()));
    };
    let Ok(Query(q)) = query else {
        return bad_query();
    };
    let now_s = kordon_objects::time::now_micros() / kordon_objects::time::MICROS;
    if let Err(e) =
        storage
            .playback_signer()
            .check_object(Download::Bundle, &site, id, q.exp, &q.token, now_s)
    {
        return error_response(e);
    }
    let b = match storage.index().bundle(id).await {
        Ok(Some(b)) if b.site == site && b.state == crate::evidence::STATE_READY => b,
        Ok(_) => return error_response(StorageError::NotFound("no such bundle".into())),
        Err(e) => return error_response(e),
    };
    let size = b.size_bytes;
    let Some((get_range, status)) = requested_range(&headers, size) else {
        return unsatisfiable(size);
    };
    let key = match crate::service::object_key(&b.object_key) {
        Ok(k) => k,
        Err(e) => return error_response(e),
    };
    let opts = object_store::GetOptions {
        range: get_range.clone().map(object_store::GetRange::Bounded),
        ..Default::default()
    };
    let got = match storage.objects().get_opts(&key, opts).await {
        Ok(g) => g,
        Err(e) => return error_response(e.into()),
    };
    let mut resp = object_response(
        Body::from_stream(got.into_stream()),
        status,
        size,
        get_range.as_ref(),
        "application/x-tar",
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"evidence-{id}.tar\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

async fn object(
    State(storage): State<Storage>,
    Path((site, key)): Path<(String, String)>,
    query: Result<Query<DownloadQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return bad_query();
    };
    let now_s = kordon_objects::time::now_micros() / kordon_objects::time::MICROS;
    // The token binds site and key: nothing else can be fetched with it.
    if let Err(e) = storage.playback_signer().check_object(
        Download::Object,
        &site,
        &key,
        q.exp,
        &q.token,
        now_s,
    ) {
        return error_response(e);
    }
    let path = match crate::service::object_key(&key) {
        Ok(k) => k,
        Err(e) => return error_response(e),
    };
    let got = match kordon_objects::ObjectStoreExt::get(storage.objects().as_ref(), &path).await {
        Ok(g) => g,
        Err(e) => return error_response(e.into()),
    };
    let size = got.meta.size;
    let content_type = match key.rsplit('.').next() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("mp4" | "m4s") => "video/mp4",
        _ => "application/octet-stream",
    };
    let mut resp = Response::new(Body::from_stream(got.into_stream()));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    common_headers(h);
    resp
}
