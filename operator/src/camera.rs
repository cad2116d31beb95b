//! The Camera reconciler: where the camera is placed and how it is doing.
//!
//! It writes only the Camera's status: the assigned replica (from [`crate::placement`] and the
//! Site's ingest replicas) and what that replica last reported over gRPC (collected by the Site
//! reconciler into [`crate::ingest::Observations`]). Conditions:
//!
//! - `Recording`: True while the replica records the camera; False with the replica's reason
//!   (Reconnecting, Offline, with its last error) when the stream is broken; Unknown when the
//!   replica cannot be asked, with why.
//! - `Ready`: True when the camera is placed and recording.
//! - `Detecting` (while the Site exists): True while the camera's detection replica (placed
//!   over `spec.detection.replicas` like ingest's) analyses it; False when the site runs no
//!   detection, the camera's detection is disabled, the replica has not taken it up yet, or its
//!   stream is broken (with the replica's error); Unknown when the replica cannot be asked or
//!   refused its shard, with why. `status.detection` names the replica, its state, the model
//!   and where inference runs.
//!
//! The status is written (server-side apply, field manager `kordon-operator`) only when it
//! differs from what the Camera already shows, so a steady state costs no API writes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kordon_proto::common::v1::VideoCodec;
use kordon_proto::ingest::v1 as pb;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, field};

use crate::conditions::{FALSE, TRUE, UNKNOWN, condition};
use crate::config::FIELD_MANAGER;
use crate::controller::Context;
use crate::crd::{Camera, CameraDetectionStatus, CameraStatus, Site};
use crate::detection::{self, Detector};
use crate::ingest::CameraObservation;
use crate::{Error, Result, placement};
use kordon_proto::detection::v1 as dpb;

pub const CONTROLLER: &str = "camera";

/// Reconciles one Camera.
pub async fn reconcile(camera: Arc<Camera>, ctx: Arc<Context>) -> Result<Action> {
    let ns = camera
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let span = tracing::info_span!(
        "reconcile",
        controller = CONTROLLER,
        namespace = %ns,
        site = %camera.spec.site,
        camera = %camera.name_any(),
        replica = field::Empty,
    );
    async move {
        let _timer = ctx.metrics.start(CONTROLLER);
        let site = ctx
            .sites
            .get(&ObjectRef::new(&camera.spec.site).within(&ns));
        let observation = site.as_deref().and_then(|s| {
            let replicas = u32::try_from(s.spec.ingest.replicas).ok()?;
            let ordinal = placement::replica_for(&s.name_any(), &camera.name_any(), replicas)?;
            Some(
                ctx.observations
                    .camera(&ns, &s.name_any(), ordinal, &camera.name_any()),
            )
        });
        if ctx.in_start_up() && matches!(observation, Some(CameraObservation::NotCollected)) {
            return Ok(Action::requeue(std::time::Duration::from_secs(1)));
        }
        let now = crate::conditions::now();
        let mut status = desired_status(&camera, site.as_deref(), observation, &now);
        if let Some(problem) = ctx.credential_problems.get(&ns, &camera.name_any()) {
            credentials_unavailable(&camera, &mut status, problem, &now);
        }
        if let Some(s) = site.as_deref()
            && s.metadata.deletion_timestamp.is_none()
        {
            let replicas = u32::try_from(s.spec.detection.replicas).unwrap_or(0);
            let observation = placement::replica_for(&s.name_any(), &camera.name_any(), replicas)
                .map(|o| {
                    (
                        o,
                        ctx.detection_observations.camera(
                            &ns,
                            &s.name_any(),
                            o,
                            &camera.name_any(),
                        ),
                    )
                });
            detection_status(&camera, s, observation, &mut status, &now);
        }
        if let Some(r) = &status.replica {
            tracing::Span::current().record("replica", r.as_str());
        }
        if camera.status.as_ref() != Some(&status) {
            let api: Api<Camera> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = Patch::Apply(json!({
                "apiVersion": Camera::api_version(&()),
                "kind": Camera::kind(&()),
                "status": status,
            }));
            api.patch_status(
                &camera.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &patch,
            )
            .await?;
            tracing::debug!(state = ?status.state, "camera status written");
        }
        Ok(Action::requeue(ctx.config.ingest.status_interval))
    }
    .instrument(span)
    .await
}

/// Counts the failure and retries with a delay.
pub fn error_policy(camera: Arc<Camera>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(camera = %camera.name_any(), %error, "camera reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    Action::requeue(std::time::Duration::from_secs(5))
}

/// The conditions the Camera shows now, which new ones keep their transition times from.
fn previous_conditions(camera: &Camera) -> &[Condition] {
    camera
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[])
}

/// The status a Camera should show, from its Site and what its replica reported.
pub fn desired_status(
    camera: &Camera,
    site: Option<&Site>,
    observation: Option<CameraObservation>,
    now: &Time,
) -> CameraStatus {
    let previous = previous_conditions(camera);
    let generation = camera.metadata.generation;
    let cond =
        |t: &str, s: &str, r: &str, m: String| condition(previous, t, s, r, m, generation, now);
    let mut status = CameraStatus {
        observed_generation: generation,
        ..CameraStatus::default()
    };

    let site_problem = match site {
        None => Some((
            "SiteNotFound",
            format!(
                "Site `{}` does not exist in this namespace",
                camera.spec.site
            ),
        )),
        Some(s) if s.metadata.deletion_timestamp.is_some() => Some((
            "SiteDeleting",
            format!("Site `{}` is being deleted", camera.spec.site),
        )),
        Some(s) if s.spec.ingest.replicas == 0 => Some((
            "NoIngestReplicas",
            format!("Site `{}` has 0 ingest replicas", camera.spec.site),
        )),
        Some(_) => None,
    };
    if let Some((reason, message)) = site_problem {
        status.conditions = vec![
            cond("Ready", FALSE, reason, message.clone()),
            cond("Recording", FALSE, reason, message),
        ];
        return status;
    }
    let Some(site) = site else {
        return status;
    };
    let site_name = site.name_any();
    let replicas = u32::try_from(site.spec.ingest.replicas).unwrap_or(0);
    let ordinal = placement::replica_for(&site_name, &camera.name_any(), replicas);
    if let Some(o) = ordinal {
        status.replica = Some(placement::replica_name(&site_name, o));
        status.shard = i32::try_from(o).ok();
    }
    let replica = status.replica.clone().unwrap_or_default();

    let mut stored = None;
    let (recording, ready) = match observation.unwrap_or(CameraObservation::NotCollected) {
        CameraObservation::NotCollected => (
            cond(
                "Recording",
                UNKNOWN,
                "StatusPending",
                format!("placed on {replica}; its status has not been read yet"),
            ),
            cond(
                "Ready",
                FALSE,
                "StatusPending",
                format!("placed on {replica}"),
            ),
        ),
        CameraObservation::Unreachable { replica, error } => {
            let msg = format!("cannot read status from {replica}: {error}");
            (
                cond("Recording", UNKNOWN, "IngestUnreachable", msg.clone()),
                cond("Ready", FALSE, "IngestUnreachable", msg),
            )
        }
        CameraObservation::NotOnReplica { replica } => {
            let msg = format!("{replica} has not taken the camera up yet");
            (
                cond("Recording", FALSE, "NotYetAssigned", msg.clone()),
                cond("Ready", FALSE, "NotYetAssigned", msg),
            )
        }
        CameraObservation::Status(s) => {
            fill_from_ingest(&mut status, &s);
            let state = pb::CameraState::try_from(s.state).unwrap_or(pb::CameraState::Unspecified);
            let error = (!s.last_error.is_empty()).then(|| s.last_error.clone());
            let (st, reason, msg) = match state {
                pb::CameraState::Recording => (TRUE, "Recording", String::new()),
                pb::CameraState::Starting => {
                    (FALSE, "Starting", "connecting to the camera".to_string())
                }
                pb::CameraState::Reconnecting => (
                    FALSE,
                    "Reconnecting",
                    error.unwrap_or_else(|| "the stream broke; reconnecting".into()),
                ),
                pb::CameraState::Offline => (
                    FALSE,
                    "Offline",
                    error.unwrap_or_else(|| "the camera cannot be reached".into()),
                ),
                pb::CameraState::Stopped => (
                    FALSE,
                    "Stopped",
                    "the replica stopped recording it".to_string(),
                ),
                pb::CameraState::Unspecified => (UNKNOWN, "UnknownState", String::new()),
            };
            stored = Some(if s.dead_letters == 0 {
                cond("Stored", TRUE, "Stored", String::new())
            } else {
                cond(
                    "Stored",
                    FALSE,
                    "DeadLettered",
                    format!(
                        "storage refused {} spool entries for good (last: {}); {replica} kept \
                         them with their media and the reason in its dead-letter folder, and \
                         recording goes on",
                        s.dead_letters,
                        if s.last_dead_letter.is_empty() {
                            "unknown"
                        } else {
                            &s.last_dead_letter
                        },
                    ),
                )
            });
            (
                cond("Recording", st, reason, msg.clone()),
                cond("Ready", if st == TRUE { TRUE } else { FALSE }, reason, msg),
            )
        }
    };
    status.conditions = vec![ready, recording];
    status.conditions.extend(stored);
    status
}

/// A camera that is not recording because its credentials Secret cannot be used says so,
/// rather than "not taken up yet".
pub fn credentials_unavailable(
    camera: &Camera,
    status: &mut CameraStatus,
    problem: String,
    now: &Time,
) {
    let recording = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Recording" && c.status == TRUE);
    if recording {
        return;
    }
    let previous = previous_conditions(camera);
    let generation = camera.metadata.generation;
    let reason = "CredentialsUnavailable";
    status.conditions = vec![
        condition(
            previous,
            "Ready",
            FALSE,
            reason,
            problem.clone(),
            generation,
            now,
        ),
        condition(
            previous,
            "Recording",
            FALSE,
            reason,
            problem,
            generation,
            now,
        ),
    ];
}

/// Adds the `Detecting` condition and `status.detection`, from what the camera's detection
/// replica (`observation`: its ordinal and what it answered) last reported.
pub fn detection_status(
    camera: &Camera,
    site: &Site,
    observation: Option<(u32, detection::CameraObservation)>,
    status: &mut CameraStatus,
    now: &Time,
) {
    let previous = previous_conditions(camera);
    let generation = camera.metadata.generation;
    let cond =
        |s: &str, r: &str, m: String| condition(previous, "Detecting", s, r, m, generation, now);
    let Some((ordinal, observation)) = observation else {
        status.detection = None;
        status.conditions.push(cond(
            FALSE,
            "DetectionOff",
            format!(
                "Site `{}` runs no detection (spec.detection.replicas is 0)",
                site.name_any()
            ),
        ));
        return;
    };
    let replica = placement::pod_name(&site.name_any(), "detection", ordinal);
    let mut shown = CameraDetectionStatus {
        replica: replica.clone(),
        ..CameraDetectionStatus::default()
    };
    let detecting = match observation {
        _ if !camera.spec.detection.enabled => cond(
            FALSE,
            "Disabled",
            "spec.detection.enabled is false".to_string(),
        ),
        detection::CameraObservation::NotCollected => cond(
            UNKNOWN,
            "StatusPending",
            format!("placed on {replica}; it has not been asked yet"),
        ),
        detection::CameraObservation::Unreachable { replica, error } => cond(
            UNKNOWN,
            "DetectionUnavailable",
            format!("{replica}: {error}"),
        ),
        detection::CameraObservation::NotOnReplica { replica } => cond(
            FALSE,
            "NotYetAssigned",
            format!("{replica} has not taken the camera up yet"),
        ),
        detection::CameraObservation::Status(d) => {
            let Detector {
                status: s,
                model,
                provider,
            } = *d;
            shown.model = (!model.is_empty()).then_some(model.clone());
            shown.provider = (!provider.is_empty()).then_some(provider.clone());
            let state =
                dpb::DetectorState::try_from(s.state).unwrap_or(dpb::DetectorState::Unspecified);
            let error = (!s.last_error.is_empty()).then(|| s.last_error.clone());
            let (st, reason, msg) = match state {
                dpb::DetectorState::Running => (
                    TRUE,
                    "Running",
                    format!("{replica} runs {model} on {provider}"),
                ),
                dpb::DetectorState::Starting => (
                    FALSE,
                    "Starting",
                    "connecting to the detect stream".to_string(),
                ),
                dpb::DetectorState::Reconnecting => (
                    FALSE,
                    "Reconnecting",
                    error.unwrap_or_else(|| "the detect stream broke; reconnecting".into()),
                ),
                dpb::DetectorState::Offline => (
                    FALSE,
                    "Offline",
                    error.unwrap_or_else(|| "the detect stream cannot be reached".into()),
                ),
                dpb::DetectorState::Disabled => (
                    FALSE,
                    "Disabled",
                    "the replica holds the camera disabled".to_string(),
                ),
                dpb::DetectorState::Unspecified => (UNKNOWN, "UnknownState", String::new()),
            };
            shown.state = match state {
                dpb::DetectorState::Unspecified => None,
                dpb::DetectorState::Starting => Some("Starting".into()),
                dpb::DetectorState::Running => Some("Running".into()),
                dpb::DetectorState::Reconnecting => Some("Reconnecting".into()),
                dpb::DetectorState::Offline => Some("Offline".into()),
                dpb::DetectorState::Disabled => Some("Disabled".into()),
            };
            cond(st, reason, msg)
        }
    };
    status.detection = Some(shown);
    status.conditions.push(detecting);
}

fn fill_from_ingest(status: &mut CameraStatus, s: &pb::CameraStatus) {
    let state = pb::CameraState::try_from(s.state).unwrap_or(pb::CameraState::Unspecified);
    status.state = match state {
        pb::CameraState::Unspecified => None,
        pb::CameraState::Starting => Some("Starting".into()),
        pb::CameraState::Recording => Some("Recording".into()),
        pb::CameraState::Reconnecting => Some("Reconnecting".into()),
        pb::CameraState::Offline => Some("Offline".into()),
        pb::CameraState::Stopped => Some("Stopped".into()),
    };
    status.codec = match VideoCodec::try_from(s.codec) {
        Ok(VideoCodec::H264) => Some("H264".into()),
        Ok(VideoCodec::H265) => Some("H265".into()),
        _ => None,
    };
    if s.width > 0 && s.height > 0 {
        status.resolution = Some(format!("{}x{}", s.width, s.height));
    }
    if s.fps > 0.0 {
        // Two decimals are what a dashboard shows; finer jitter would only cause writes.
        status.fps = Some((s.fps * 100.0).round() / 100.0);
    }
    if s.bitrate_bps > 0 {
        // Rounded to kbit/s for the same reason.
        status.bitrate_bps = i64::try_from(s.bitrate_bps / 1000 * 1000).ok();
    }
    status.source = match pb::RtspSource::try_from(s.source) {
        Ok(pb::RtspSource::Retina) => Some("retina".into()),
        Ok(pb::RtspSource::Gstreamer) => Some("gstreamer".into()),
        _ => None,
    };
    status.transport = match pb::RtspTransport::try_from(s.transport) {
        Ok(pb::RtspTransport::Tcp) => Some("TCP".into()),
        Ok(pb::RtspTransport::Udp) => Some("UDP".into()),
        _ => None,
    };
    status.dead_letters =
        (s.dead_letters > 0).then(|| i64::try_from(s.dead_letters).unwrap_or(i64::MAX));
    status.last_segment = s.last_segment_end.as_ref().and_then(time);
    if !s.last_error.is_empty() {
        status.last_error = Some(s.last_error.clone());
        status.last_error_time = s.last_error_time.as_ref().and_then(time);
    }
}

fn time(t: &prost_types::Timestamp) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::new(t.seconds, t.nanos)
        .ok()
        .map(Time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{camera, site};
    use kordon_proto::common::v1::CameraRef;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn cond<'a>(
        s: &'a CameraStatus,
        t: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.conditions.iter().find(|c| c.type_ == t).expect(t)
    }

    #[test]
    fn a_camera_of_a_missing_site_says_so() {
        let c = camera("gate-1", "nowhere");
        let s = desired_status(&c, None, None, &now());
        assert_eq!(cond(&s, "Ready").reason, "SiteNotFound");
        assert!(cond(&s, "Ready").message.contains("nowhere"));
        assert_eq!(s.replica, None);
    }

    #[test]
    fn placement_is_shown_before_ingest_answers_and_unreachable_is_not_made_up() {
        let site = site("burgas", 3);
        let c = camera("gate-1", "burgas");
        let s = desired_status(&c, Some(&site), None, &now());
        let ordinal = placement::replica_for("burgas", "gate-1", 3).unwrap();
        assert_eq!(s.replica, Some(format!("burgas-ingest-{ordinal}")));
        assert_eq!(cond(&s, "Recording").status, UNKNOWN);

        let obs = CameraObservation::Unreachable {
            replica: "burgas-ingest-1".into(),
            error: "Unavailable: dns error".into(),
        };
        let s = desired_status(&c, Some(&site), Some(obs), &now());
        assert_eq!(cond(&s, "Recording").reason, "IngestUnreachable");
        assert!(cond(&s, "Recording").message.contains("dns error"));
        assert_eq!(s.codec, None);
        assert_eq!(s.state, None);
    }

    #[test]
    fn a_broken_stream_shows_why_and_a_recording_one_reads_like_a_dashboard() {
        let site = site("burgas", 1);
        let c = camera("gate-1", "burgas");
        let broken = pb::CameraStatus {
            camera: Some(CameraRef {
                site: "burgas".into(),
                camera: "gate-1".into(),
            }),
            state: pb::CameraState::Reconnecting as i32,
            last_error: "RTSP: 401 Unauthorized".into(),
            last_error_time: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let s = desired_status(
            &c,
            Some(&site),
            Some(CameraObservation::Status(Box::new(broken))),
            &now(),
        );
        assert_eq!(cond(&s, "Recording").status, FALSE);
        assert_eq!(cond(&s, "Recording").reason, "Reconnecting");
        assert_eq!(cond(&s, "Recording").message, "RTSP: 401 Unauthorized");
        assert_eq!(s.last_error.as_deref(), Some("RTSP: 401 Unauthorized"));
        assert_eq!(s.state.as_deref(), Some("Reconnecting"));

        let ok = pb::CameraStatus {
            state: pb::CameraState::Recording as i32,
            codec: VideoCodec::H265 as i32,
            width: 1920,
            height: 1080,
            fps: 24.996,
            bitrate_bps: 4_012_345,
            last_segment_end: Some(prost_types::Timestamp {
                seconds: 1_800_000_006,
                nanos: 0,
            }),
            ..Default::default()
        };
        let s = desired_status(
            &c,
            Some(&site),
            Some(CameraObservation::Status(Box::new(ok))),
            &now(),
        );
        assert_eq!(cond(&s, "Ready").status, TRUE);
        assert_eq!(s.codec.as_deref(), Some("H265"));
        assert_eq!(s.resolution.as_deref(), Some("1920x1080"));
        assert_eq!(s.fps, Some(25.0));
        assert_eq!(s.bitrate_bps, Some(4_012_000));
        assert!(s.last_segment.is_some());
        assert_eq!(cond(&s, "Stored").status, TRUE);
        assert_eq!(s.dead_letters, None);
    }

    /// Issue 10: footage storage refused for good (dead-lettered by ingest) shows on the
    /// Camera, with the source and transport in use.
    #[test]
    fn dead_lettered_footage_and_the_transport_show_on_the_camera() {
        let site = site("burgas", 1);
        let c = camera("gate-1", "burgas");
        let refused = pb::CameraStatus {
            state: pb::CameraState::Recording as i32,
            source: pb::RtspSource::Retina as i32,
            transport: pb::RtspTransport::Udp as i32,
            dead_letters: 2,
            last_dead_letter: "invalid_argument".into(),
            ..Default::default()
        };
        let s = desired_status(
            &c,
            Some(&site),
            Some(CameraObservation::Status(Box::new(refused))),
            &now(),
        );
        assert_eq!(cond(&s, "Ready").status, TRUE, "recording goes on");
        let stored = cond(&s, "Stored");
        assert_eq!(
            (stored.status.as_str(), stored.reason.as_str()),
            (FALSE, "DeadLettered")
        );
        assert!(
            stored.message.contains("refused 2 spool entries")
                && stored.message.contains("invalid_argument")
                && stored.message.contains("burgas-ingest-0"),
            "{}",
            stored.message
        );
        assert_eq!(s.dead_letters, Some(2));
        assert_eq!(
            (s.source.as_deref(), s.transport.as_deref()),
            (Some("retina"), Some("UDP"))
        );
    }

    #[test]
    fn detecting_says_where_the_camera_is_analysed_and_why_not() {
        let mut s = site("burgas", 1);
        let mut c = camera("gate-1", "burgas");
        let detecting = |c: &Camera, s: &Site, obs: Option<(u32, detection::CameraObservation)>| {
            let mut st = CameraStatus::default();
            detection_status(c, s, obs, &mut st, &now());
            (cond(&st, "Detecting").clone(), st.detection)
        };

        s.spec.detection.replicas = 0;
        let (d, shown) = detecting(&c, &s, None);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            (FALSE, "DetectionOff")
        );
        assert_eq!(shown, None);

        s.spec.detection.replicas = 2;
        let (d, shown) = detecting(
            &c,
            &s,
            Some((
                1,
                detection::CameraObservation::Unreachable {
                    replica: "burgas-detection-1".into(),
                    error: "Unavailable: dns error".into(),
                },
            )),
        );
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            (UNKNOWN, "DetectionUnavailable")
        );
        assert!(
            d.message
                .contains("burgas-detection-1: Unavailable: dns error")
        );
        assert_eq!(shown.unwrap().replica, "burgas-detection-1");

        let (d, _) = detecting(
            &c,
            &s,
            Some((
                0,
                detection::CameraObservation::NotOnReplica {
                    replica: "burgas-detection-0".into(),
                },
            )),
        );
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            (FALSE, "NotYetAssigned")
        );

        let running = |state: dpb::DetectorState, error: &str| {
            detection::CameraObservation::Status(Box::new(Detector {
                status: dpb::CameraDetectorStatus {
                    state: state as i32,
                    last_error: error.into(),
                    ..Default::default()
                },
                model: "nanodet-m-416".into(),
                provider: "cuda".into(),
            }))
        };
        let (d, shown) = detecting(&c, &s, Some((0, running(dpb::DetectorState::Running, ""))));
        assert_eq!((d.status.as_str(), d.reason.as_str()), (TRUE, "Running"));
        assert_eq!(d.message, "burgas-detection-0 runs nanodet-m-416 on cuda");
        assert_eq!(
            shown,
            Some(CameraDetectionStatus {
                replica: "burgas-detection-0".into(),
                state: Some("Running".into()),
                model: Some("nanodet-m-416".into()),
                provider: Some("cuda".into()),
            })
        );
        let (d, _) = detecting(
            &c,
            &s,
            Some((
                0,
                running(dpb::DetectorState::Reconnecting, "RTSP: 404 Not Found"),
            )),
        );
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            (FALSE, "Reconnecting", "RTSP: 404 Not Found")
        );

        c.spec.detection.enabled = false;
        let (d, _) = detecting(&c, &s, Some((0, running(dpb::DetectorState::Disabled, ""))));
        assert_eq!((d.status.as_str(), d.reason.as_str()), (FALSE, "Disabled"));
    }

    #[test]
    fn an_unchanged_camera_needs_no_write() {
        let site = site("burgas", 2);
        let mut c = camera("gate-1", "burgas");
        let first = desired_status(&c, Some(&site), None, &now());
        c.status = Some(first.clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_100).unwrap());
        assert_eq!(desired_status(&c, Some(&site), None, &later), first);
    }
}
