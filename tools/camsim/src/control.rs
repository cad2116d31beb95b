//! HTTP control endpoint for fault injection in tests and demos.
//!
//! | route | effect |
//! |---|---|
//! | `GET /cameras` | status of every camera (JSON array of [`CameraStatus`]) |
//! | `GET /cameras/{i}` | status of camera `i` |
//! | `POST /cameras/{i}/stop` | ends camera `i`'s streams: clients get an RTCP BYE (EOS) and are disconnected, new requests get 404 |
//! | `POST /cameras/{i}/start` | serves camera `i` again (after a stop) or ends its stall |
//! | `POST /cameras/{i}/stall?seconds=N` | sessions stay open but no media flows for `N` seconds (fractions allowed), or until `/start` when `seconds` is left out |
//!
//! Every `POST` answers with the camera's new status. Errors are JSON `{"error": "..."}` with
//! 404 (no such camera), 409 (stall of a stopped camera) or 400 (bad `seconds`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{CameraStatus, CamsimError, config::MAX_STALL, server::Shared};

type AppState = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/cameras", get(list))
        .route("/cameras/{index}", get(show))
        .route("/cameras/{index}/stop", post(stop))
        .route("/cameras/{index}/start", post(start))
        .route("/cameras/{index}/stall", post(stall))
        .with_state(shared)
}

async fn list(State(shared): AppState) -> Json<Vec<CameraStatus>> {
    Json(shared.statuses())
}

async fn show(State(shared): AppState, Path(index): Path<usize>) -> ApiResult {
    Ok(Json(shared.status(index)?))
}

async fn stop(State(shared): AppState, Path(index): Path<usize>) -> ApiResult {
    Ok(Json(shared.stop(index)?))
}

async fn start(State(shared): AppState, Path(index): Path<usize>) -> ApiResult {
    Ok(Json(shared.start(index)?))
}

#[derive(Debug, Deserialize)]
struct StallQuery {
    seconds: Option<f64>,
}

async fn stall(
    State(shared): AppState,
    Path(index): Path<usize>,
    Query(query): Query<StallQuery>,
) -> ApiResult {
    let duration = query.seconds.map(stall_duration).transpose()?;
    Ok(Json(shared.stall(index, duration)?))
}

fn stall_duration(seconds: f64) -> Result<Duration, CamsimError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_STALL)
        .ok_or_else(|| CamsimError::InvalidConfig {
            key: "seconds",
            message: format!(
                "{seconds} is not a number of seconds between 0 and {}",
                MAX_STALL.as_secs()
            ),
        })
}

type ApiResult = Result<Json<CameraStatus>, ApiError>;

struct ApiError(CamsimError);

impl From<CamsimError> for ApiError {
    fn from(error: CamsimError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self.0 {
            CamsimError::UnknownCamera { .. } => (StatusCode::NOT_FOUND, self.0.to_string()),
            CamsimError::CameraStopped { .. } => (StatusCode::CONFLICT, self.0.to_string()),
            CamsimError::InvalidConfig { .. } => (StatusCode::BAD_REQUEST, self.0.to_string()),
            other => {
                tracing::error!(error = %other, "control request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// The control endpoint's server task.
pub(crate) struct ControlServer {
    pub addr: SocketAddr,
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    pub fn cancel(&self) {
        self.token.cancel();
    }

    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.task.await;
    }
}

pub(crate) async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> Result<ControlServer, CamsimError> {
    let bind_error = |e: std::io::Error| CamsimError::Bind {
        what: "HTTP control",
        addr,
        message: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let token = CancellationToken::new();
    let stop = token.clone().cancelled_owned();
    let app = router(shared);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%error, "control endpoint failed");
        }
    });
    tracing::debug!(addr = %local, "control endpoint listening");
    Ok(ControlServer {
        addr: local,
        token,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_durations_are_validated() {
        assert_eq!(stall_duration(2.0).ok(), Some(Duration::from_secs(2)));
        assert_eq!(stall_duration(0.5).ok(), Some(Duration::from_millis(500)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12] {
            let err = stall_duration(bad).expect_err("refused");
            assert!(err.to_string().contains("seconds"), "{err}");
        }
    }
}
