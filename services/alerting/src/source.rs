//! Detections from the site's detection replicas: one `WatchDetections` stream per replica,
//! resumed after a restart or a dropped stream from the last detection processed (the
//! watermark, less a margin: live detections of different cameras arrive out of order), and
//! reconnected with backoff. The engine drops detections it has already seen.

use std::time::Duration;

use futures::StreamExt;
use kordon_proto::detection::v1 as dpb;
use kordon_proto::detection::v1::detection_service_client::DetectionServiceClient;
use kordon_proto::time::timestamp_from_micros;
use kordon_runtime::client::{self, ServiceClientConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Resume this far before the watermark.
const MARGIN: Duration = Duration::from_secs(30);
/// Detection keeps this much for `since` (its `WatchDetections` limit), less a little.
const MAX_REPLAY: Duration = Duration::from_secs(570);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Reads one detection replica until `cancel`.
pub async fn run(
    index: usize,
    url: String,
    client_config: ServiceClientConfig,
    store: Store,
    tx: mpsc::Sender<(usize, dpb::Detection)>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    let mut logged_down = false;
    loop {
        let since = match store.watermark(&url).await {
            Ok(Some(t)) => {
                let oldest = crate::now_us() - MAX_REPLAY.as_micros() as i64;
                Some((t - MARGIN.as_micros() as i64).max(oldest))
            }
            _ => None,
        };
        let result = async {
            let channel =
                client::connect_lazy(&client_config.options(&url)).map_err(|e| e.to_string())?;
            let mut c = DetectionServiceClient::new(channel);
            let mut stream = c
                .watch_detections(dpb::WatchDetectionsRequest {
                    since: since.map(timestamp_from_micros),
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("{}: {}", s.code(), s.message()))?
                .into_inner();
            tracing::info!(source = %url, resumed = since.is_some(), "reading detections");
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(n),
                    item = stream.next() => match item {
                        Some(Ok(r)) => {
                            if let Some(d) = r.detection {
                                n += 1;
                                if tx.send((index, d)).await.is_err() {
                                    return Ok(n);
                                }
                            }
                        }
                        Some(Err(s)) => return Err(format!("{}: {}", s.code(), s.message())),
                        None => return Err("the stream ended".to_string()),
                    }
                }
            }
        }
        .await;
        if cancel.is_cancelled() {
            return;
        }
        match result {
            Ok(n) if n > 0 => backoff = Duration::from_millis(250),
            Ok(_) => {}
            Err(e) => {
                if !logged_down {
                    tracing::warn!(source = %url, error = %e, "detections unavailable; retrying");
                    logged_down = true;
                } else {
                    tracing::debug!(source = %url, error = %e, "detections still unavailable");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
