//! A bound on the server streams that follow live state (the `Watch*` RPCs).
//!
//! A watch costs its server a task, a channel and a subscription for as long as the client keeps
//! it open, and a client can open many: [`crate::server`] bounds streams per connection, not
//! connections. [`WatchLimit`] bounds the watches of one RPC in one process. Guarantees:
//!
//! - A watch that gets a [`WatchPermit`] is counted until the permit is dropped; at most `max`
//!   permits of one limit exist at once.
//! - Beyond that, [`WatchLimit::try_acquire`] answers RESOURCE_EXHAUSTED at once, naming the RPC
//!   and the limit; nothing waits and nothing is queued.
//! - `kordon_grpc_server_watch_streams{grpc_method}` is the number of permits held, and
//!   `kordon_grpc_server_watch_refused_total{grpc_method}` counts refusals.
//!
//! Assumes the caller moves the permit into the task that feeds the stream and that this task
//! ends when the client goes away (it selects on `mpsc::Sender::closed` while it waits for
//! news); otherwise a vanished client keeps its slot until the next message fails to send.

use std::sync::{Arc, OnceLock};

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::register;

/// Watches of one RPC one process serves at once, unless a service says otherwise.
pub const DEFAULT_MAX_WATCHES: usize = 1024;

/// The bound on one RPC's open watches. Clones share the bound.
#[derive(Clone)]
pub struct WatchLimit {
    method: &'static str,
    max: usize,
    slots: Arc<Semaphore>,
}

/// One open watch; dropping it frees the slot.
#[derive(Debug)]
pub struct WatchPermit {
    _slot: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        self.open.dec();
    }
}

struct WatchMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
}

fn metrics() -> &'static WatchMetrics {
    static M: OnceLock<WatchMetrics> = OnceLock::new();
    M.get_or_init(|| WatchMetrics {
        open: register(
            IntGaugeVec::new(
                Opts::new(
                    "kordon_grpc_server_watch_streams",
                    "Watch streams open now, by method",
                ),
                &["grpc_method"],
            )
            .expect("static metric definition"),
        ),
        refused: register(
            IntCounterVec::new(
                Opts::new(
                    "kordon_grpc_server_watch_refused_total",
                    "Watch calls refused because the method's limit of open streams was reached",
                ),
                &["grpc_method"],
            )
            .expect("static metric definition"),
        ),
    })
}

impl WatchLimit {
    /// `method` is the RPC's name (`WatchAlerts`): a metric label and part of the refusal.
    /// A `max` of 0 is taken as 1.
    pub fn new(method: &'static str, max: usize) -> Self {
        let max = max.max(1);
        WatchLimit {
            method,
            max,
            slots: Arc::new(Semaphore::new(max)),
        }
    }

    /// A slot for one more watch, or RESOURCE_EXHAUSTED naming the limit.
    pub fn try_acquire(&self) -> Result<WatchPermit, tonic::Status> {
        let m = metrics();
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let open = m.open.with_label_values(&[self.method]);
                open.inc();
                Ok(WatchPermit { _slot: slot, open })
            }
            Err(_) => {
                m.refused.with_label_values(&[self.method]).inc();
                Err(tonic::Status::resource_exhausted(format!(
                    "{} streams are limited to {} at once on this server and all are open; \
                     close one or retry later",
                    self.method, self.max
                )))
            }
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Watches open now under this limit.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_limit_a_watch_is_refused_naming_it_and_a_dropped_permit_frees_its_slot() {
        let limit = WatchLimit::new("WatchTest", 3);
        let mut held: Vec<WatchPermit> = (0..3).map(|_| limit.try_acquire().unwrap()).collect();
        assert_eq!(limit.open(), 3);
        let refused = limit.try_acquire().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("WatchTest") && refused.message().contains(" 3 "),
            "{}",
            refused.message()
        );
        let text = crate::metrics::render();
        assert!(
            text.contains("kordon_grpc_server_watch_streams{grpc_method=\"WatchTest\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("kordon_grpc_server_watch_refused_total{grpc_method=\"WatchTest\"} 1"),
            "{text}"
        );

        held.pop();
        assert_eq!(limit.open(), 2);
        held.push(limit.try_acquire().unwrap());
        // Clones share the bound.
        assert!(limit.clone().try_acquire().is_err());
        held.clear();
        assert_eq!(limit.open(), 0);
        assert!(
            crate::metrics::render()
                .contains("kordon_grpc_server_watch_streams{grpc_method=\"WatchTest\"} 0")
        );
    }

    #[test]
    fn a_limit_of_zero_admits_one() {
        let limit = WatchLimit::new("WatchZero", 0);
        let _one = limit.try_acquire().unwrap();
        assert_eq!(limit.max(), 1);
        assert!(limit.try_acquire().is_err());
    }
}
