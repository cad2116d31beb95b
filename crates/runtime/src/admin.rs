//! The admin HTTP port: `/live`, `/ready` and `/metrics`.
//!
//! `/live` answers 200 while the process runs. `/ready` answers 200 once every component that
//! registered with [`Readiness`] says it is ready, and 503 (with the components that are not)
//! otherwise — in particular from the moment shutdown begins, so load balancers stop sending
//! work before listeners close. `/metrics` is the Prometheus text format.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::RuntimeError;

/// Readiness of the process's components (e.g. `grpc`, `storage.db`).
#[derive(Clone, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a component, not ready yet.
    pub fn register(&self, name: &str) {
        self.set(name, false);
    }

    pub fn set(&self, name: &str, ready: bool) {
        if let Ok(mut c) = self.components.lock() {
            c.insert(name.to_string(), ready);
        }
    }

    /// Marks every component not ready (shutdown has begun).
    pub fn set_all_not_ready(&self) {
        if let Ok(mut c) = self.components.lock() {
            c.values_mut().for_each(|v| *v = false);
        }
    }

    /// The components that are not ready; empty means ready.
    pub fn not_ready(&self) -> Vec<String> {
        match self.components.lock() {
            Ok(c) if c.is_empty() => vec!["(no component registered)".to_string()],
            Ok(c) => c
                .iter()
                .filter(|(_, ready)| !**ready)
                .map(|(n, _)| n.clone())
                .collect(),
            Err(_) => vec!["(state poisoned)".to_string()],
        }
    }
}

/// The admin router, for serving or for tests.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn ready(State(r): State<Readiness>) -> impl IntoResponse {
    let missing = r.not_ready();
    if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join(", ")),
        )
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

/// Binds the admin listener now (so a busy port fails start-up) and returns the serving future.
pub async fn bind(
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<impl Future<Output = Result<(), RuntimeError>>, RuntimeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, "admin listening (/live, /ready, /metrics)");
    let app = router(readiness);
    Ok(async move {
        crate::http::serve(
            listener,
            app,
            shutdown.cancelled_owned(),
            crate::http::HttpLimits::default(),
        )
        .await
        .map_err(RuntimeError::Admin)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_component() {
        let r = Readiness::new();
        assert!(!r.not_ready().is_empty(), "nothing registered is not ready");
        r.register("grpc");
        r.register("db");
        r.set("grpc", true);
        assert_eq!(r.not_ready(), vec!["db".to_string()]);
        r.set("db", true);
        assert!(r.not_ready().is_empty());
        r.set_all_not_ready();
        assert_eq!(r.not_ready().len(), 2);
    }
}
