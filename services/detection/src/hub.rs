//! Live detections for `WatchDetections`: one broadcast channel per process, and the resume
//! rule (replay stored detections after `since`, then live ones, without duplicates).

use std::collections::HashSet;
use std::sync::Arc;

use kordon_proto::detection::v1 as pb;
use tokio::sync::broadcast;

/// How far a subscriber may fall behind before it is cut off (RESOURCE_EXHAUSTED; it resumes
/// with `since`).
pub const MAX_BEHIND: usize = 1024;

/// The live feed of one process.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<pb::Detection>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::channel(MAX_BEHIND).0,
        }
    }
}

impl Hub {
    /// Sends to every subscriber (none listening is fine).
    pub fn publish(&self, d: Arc<pb::Detection>) {
        let _ = self.tx.send(d);
    }

    /// A new subscription; subscribe before reading the store, so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<pb::Detection>> {
        self.tx.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// Remembers the ids a watch replayed from the store, so the same detections arriving live
/// are not sent twice. Bounded by what can be stored in the replay window, and forgotten once
/// live detections run [`FORGET_AFTER`] past the newest replayed one.
#[derive(Default)]
pub struct Replayed {
    ids: HashSet<String>,
    /// The newest time replayed; live detections after it cannot have been replayed.
    newest_us: i64,
}

/// Live detections do not arrive in time order across cameras (each camera's pipeline runs on
/// its own, and a busy detector delays some): one camera's detection past the replay says
/// nothing about another's still inside it. Once live detections are this far past the replay,
/// none still to come can be from inside it.
pub const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl Replayed {
    pub fn note(&mut self, id: &str, time_us: i64) {
        self.ids.insert(id.to_string());
        self.newest_us = self.newest_us.max(time_us);
    }

    /// Whether a live detection was already sent from the store.
    pub fn seen(&mut self, id: &str, time_us: i64) -> bool {
        if time_us > self.newest_us {
            // Past the replay: it cannot have been replayed. Far past it, nothing can be.
            if !self.ids.is_empty() && time_us - self.newest_us > FORGET_AFTER.as_micros() as i64 {
                self.ids = HashSet::new();
            }
            return false;
        }
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_ids_are_skipped_also_when_live_detections_arrive_out_of_order() {
        let mut r = Replayed::default();
        r.note("a", 10);
        r.note("b", 20);
        assert!(r.seen("a", 10));
        assert!(!r.seen("c", 15), "live-only detection inside the window");
        assert!(!r.seen("d", 21), "past the replay");
        // Another camera's detection inside the window arrives after one past it.
        assert!(
            r.seen("b", 20),
            "still a duplicate after a newer live detection"
        );
        let far = 20 + FORGET_AFTER.as_micros() as i64 + 1;
        assert!(!r.seen("e", far));
        assert!(
            r.ids.is_empty(),
            "forgotten once live runs far past the replay"
        );
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_learns_it() {
        let hub = Hub::default();
        let mut rx = hub.subscribe();
        for i in 0..(MAX_BEHIND + 5) {
            hub.publish(Arc::new(pb::Detection {
                id: i.to_string(),
                ..Default::default()
            }));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
