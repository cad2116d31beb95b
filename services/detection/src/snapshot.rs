//! Detection snapshots: a JPEG of the frame a track was reported on, stored in object storage
//! in the camera's folder (`kordon_objects::still_key`, kind `snapshots`) and registered with
//! storage (`RegisterSnapshot`, kind DETECTION), so retention, ownership checks and the access
//! log treat it like any other footage.
//!
//! A snapshot gets its id at once (the detection names it while the upload runs); the row is
//! stored first, the object written and registered after. An upload that fails stays pending
//! (`storage_id` empty) and is retried by [`Snapshots::retry_pending`]; nothing is lost when
//! object storage or the storage service is down for a while.

use std::sync::Arc;

use bytes::Bytes;
use kordon_objects::{ObjectStore, ObjectStoreExt};
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::timestamp_from_micros;
use kordon_runtime::client::AuthedChannel;

use crate::DetectionError;
use crate::store::{SnapshotRow, Store};

/// JPEG quality of snapshots (a readable still at a modest size: ~40 KiB at 640x360).
pub const JPEG_QUALITY: u8 = 85;

/// Encodes a packed BGR8 picture as JPEG.
pub fn encode_jpeg(width: u32, height: u32, bgr: &[u8]) -> Result<Vec<u8>, DetectionError> {
    let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(DetectionError::Invalid(format!(
                "snapshot of {width}x{height} pixels cannot be a JPEG"
            )));
        }
    };
    let mut out = Vec::with_capacity(bgr.len() / 10);
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(bgr, w, h, jpeg_encoder::ColorType::Bgr)
        .map_err(|e| DetectionError::Invalid(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

/// Draws a box outline (normalised coordinates) into a packed BGR8 picture, `thickness`
/// pixels wide, in `colour` (B, G, R).
pub fn draw_box(
    width: u32,
    height: u32,
    bgr: &mut [u8],
    bbox: [f32; 4],
    thickness: u32,
    colour: [u8; 3],
) {
    let (w, h) = (width as i64, height as i64);
    if w == 0 || h == 0 || bgr.len() < (w * h * 3) as usize {
        return;
    }
    let px = |v: f32, max: i64| ((v.clamp(0.0, 1.0) * max as f32) as i64).clamp(0, max - 1);
    let (x1, y1, x2, y2) = (
        px(bbox[0], w),
        px(bbox[1], h),
        px(bbox[2], w),
        px(bbox[3], h),
    );
    let t = thickness.max(1) as i64;
    let mut set = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let i = ((y * w + x) * 3) as usize;
            bgr[i..i + 3].copy_from_slice(&colour);
        }
    };
    for d in 0..t {
        for x in x1..=x2 {
            set(x, y1 + d);
            set(x, y2 - d);
        }
        for y in y1..=y2 {
            set(x1 + d, y);
            set(x2 - d, y);
        }
    }
}

/// Where snapshots go.
#[derive(Clone)]
pub struct Snapshots {
    pub objects: Arc<dyn ObjectStore>,
    pub object_prefix: String,
    pub storage: StorageServiceClient<AuthedChannel>,
    pub store: Store,
}

/// One picture to keep.
pub struct Still {
    pub site: String,
    pub camera: String,
    pub captured_us: i64,
    pub detection_id: String,
    pub width: u32,
    pub height: u32,
    pub jpeg: Bytes,
}

impl Snapshots {
    /// Records the snapshot (pending) and returns its id; the upload and registration run in
    /// the background.
    pub async fn save(&self, still: Still) -> Result<String, DetectionError> {
        let sha = kordon_objects::sha256(&still.jpeg);
        let key = kordon_objects::still_key(
            &self.object_prefix,
            &still.site,
            &still.camera,
            "snapshots",
            still.captured_us,
            &sha,
            "jpg",
        )?;
        let row = SnapshotRow {
            id: uuid::Uuid::now_v7().to_string(),
            site: still.site,
            camera: still.camera,
            captured_us: still.captured_us,
            detection_id: still.detection_id,
            object_key: key.to_string(),
            content_type: "image/jpeg".into(),
            width: still.width,
            height: still.height,
            size_bytes: still.jpeg.len() as u64,
            sha256: sha,
            storage_id: String::new(),
        };
        self.store.insert_snapshot(&row).await?;
        let id = row.id.clone();
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.upload(&row, Some(still.jpeg)).await {
                me.failed(&row, e).await;
            }
        });
        Ok(id)
    }

    /// Counts a failed upload; one storage refuses for good is marked and never retried (so
    /// it cannot hold up the others), one that may succeed later stays pending.
    async fn failed(&self, row: &SnapshotRow, e: DetectionError) {
        crate::metrics::get()
            .snapshot_failures
            .with_label_values(&[&row.site])
            .inc();
        let permanent = matches!(&e, DetectionError::Storage(s) if matches!(
            s.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::AlreadyExists
                | tonic::Code::PermissionDenied
                | tonic::Code::FailedPrecondition
        ));
        if permanent {
            tracing::error!(snapshot = %row.id, error = %e, "storage refused the snapshot");
            if let Err(e2) = self.store.snapshot_failed(&row.id, &e.to_string()).await {
                tracing::warn!(snapshot = %row.id, error = %e2, "could not mark the snapshot failed");
            }
        } else {
            tracing::warn!(snapshot = %row.id, error = %e,
                           "snapshot not stored yet; it will be retried");
        }
    }

    /// Writes the object (when `jpeg` is given; a retry after a restart finds it written or
    /// gives up on it) and registers it with storage.
    async fn upload(&self, row: &SnapshotRow, jpeg: Option<Bytes>) -> Result<(), DetectionError> {
        let key = kordon_objects::ObjectPath::parse(&row.object_key)
            .map_err(|e| DetectionError::Invalid(format!("snapshot key: {e}")))?;
        if let Some(bytes) = jpeg {
            kordon_objects::put_immutable(self.objects.as_ref(), &key, bytes, &row.sha256).await?;
        }
        let reply = self
            .storage
            .clone()
            .register_snapshot(spb::RegisterSnapshotRequest {
                camera: Some(common::CameraRef {
                    site: row.site.clone(),
                    camera: row.camera.clone(),
                }),
                kind: spb::SnapshotKind::Detection as i32,
                captured_at: Some(timestamp_from_micros(row.captured_us)),
                content_type: row.content_type.clone(),
                width: row.width,
                height: row.height,
                size_bytes: row.size_bytes,
                sha256: row.sha256.to_vec(),
                object_key: row.object_key.clone(),
                detection_id: row.detection_id.clone(),
                source_sequence: 0,
            })
            .await?
            .into_inner();
        let storage_id = reply.snapshot.map(|s| s.id).unwrap_or_default();
        self.store.snapshot_registered(&row.id, &storage_id).await?;
        crate::metrics::get()
            .snapshots
            .with_label_values(&[&row.site])
            .inc();
        Ok(())
    }

    /// Registers snapshots left pending (storage was down, or the process stopped mid-way).
    /// An object that never reached object storage cannot be rebuilt; its row stays pending
    /// and reads of it answer UNAVAILABLE.
    pub async fn retry_pending(&self) -> Result<usize, DetectionError> {
        let mut done = 0;
        for id in self.store.pending_snapshots(100).await? {
            let Some(row) = self.store.snapshot(&id).await? else {
                continue;
            };
            match self.upload(&row, None).await {
                Ok(()) => done += 1,
                Err(e) => {
                    let transient = !matches!(&e, DetectionError::Storage(s) if matches!(
                        s.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::AlreadyExists
                            | tonic::Code::PermissionDenied
                            | tonic::Code::FailedPrecondition
                    ));
                    self.failed(&row, e).await;
                    if transient {
                        break;
                    }
                }
            }
        }
        Ok(done)
    }

    /// The image bytes of a snapshot.
    pub async fn read(&self, row: &SnapshotRow) -> Result<Bytes, DetectionError> {
        let key = kordon_objects::ObjectPath::parse(&row.object_key)
            .map_err(|e| DetectionError::Invalid(format!("snapshot key: {e}")))?;
        let bytes = self
            .objects
            .get(&key)
            .await
            .map_err(kordon_objects::ObjectsError::from)?
            .bytes()
            .await
            .map_err(kordon_objects::ObjectsError::from)?;
        if kordon_objects::sha256(&bytes) != row.sha256 {
            return Err(DetectionError::Unavailable(format!(
                "snapshot {} does not match its recorded SHA-256",
                row.id
            )));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_of_a_picture_with_a_box() {
        let (w, h) = (64u32, 48u32);
        let mut bgr = vec![40u8; (w * h * 3) as usize];
        draw_box(w, h, &mut bgr, [0.25, 0.25, 0.75, 0.75], 2, [0, 0, 255]);
        // The box's top-left corner is red (BGR 0,0,255), its centre untouched.
        let i = ((12 * w + 16) * 3) as usize;
        assert_eq!(&bgr[i..i + 3], &[0, 0, 255]);
        let c = ((24 * w + 32) * 3) as usize;
        assert_eq!(&bgr[c..c + 3], &[40, 40, 40]);
        let jpeg = encode_jpeg(w, h, &bgr).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG start of image");
        assert!(encode_jpeg(0, 10, &[]).is_err());
    }
}
