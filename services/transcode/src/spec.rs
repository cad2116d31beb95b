//! Submitted specs, checked and turned into the work a job does.
//!
//! A spec is validated once at submission (INVALID_ARGUMENT naming the field) and again when a
//! job starts (a job stored by an older version, or a process whose encoders differ).

use std::time::Duration;

use kordon_media::Codec;
use kordon_proto::common::v1 as common;
use kordon_proto::time::micros_from_timestamp;
use kordon_proto::transcode::v1 as pb;

use crate::TranscodeError;
use crate::overlay::Polygon;

/// Lowest rendition bitrate.
pub const MIN_BITRATE: u64 = 50_000;
/// Highest bitrate any job may ask for.
pub const MAX_BITRATE: u64 = 200_000_000;
/// Longest range one job may cover.
pub const MAX_RANGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most privacy masks per viewer copy, and points per mask.
pub const MAX_MASKS: usize = 32;
pub const MAX_POINTS: usize = 64;

/// What a job does, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub site: String,
    pub camera: String,
    pub from_us: i64,
    pub to_us: i64,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Rendition {
        profile: String,
        bitrate_bps: u64,
        max_height: u32,
        max_fps: f64,
        codec: Codec,
        preset: pb::EncoderPreset,
    },
    Thumbnails {
        width: u32,
        /// `None`: one per segment.
        interval_us: Option<i64>,
    },
    Export {
        burn_in: bool,
        time_zone: String,
        masks: Vec<Polygon>,
        bitrate_bps: Option<u64>,
        codec: Codec,
        preset: pb::EncoderPreset,
        blur_people: bool,
        evidence_bundle_id: String,
    },
}

impl Work {
    pub fn job_kind(&self) -> pb::JobKind {
        match self.kind {
            Kind::Rendition { .. } => pb::JobKind::Rendition,
            Kind::Thumbnails { .. } => pb::JobKind::Thumbnails,
            Kind::Export { .. } => pb::JobKind::Export,
        }
    }
}

fn invalid(m: impl Into<String>) -> TranscodeError {
    TranscodeError::Invalid(m.into())
}

fn camera(c: &Option<common::CameraRef>, field: &str) -> Result<(String, String), TranscodeError> {
    let c = c
        .as_ref()
        .ok_or_else(|| invalid(format!("{field}: required")))?;
    kordon_objects::validate_name("site", &c.site)
        .map_err(|e| invalid(format!("{field}.site: {e}")))?;
    kordon_objects::validate_name("camera", &c.camera)
        .map_err(|e| invalid(format!("{field}.camera: {e}")))?;
    Ok((c.site.clone(), c.camera.clone()))
}

fn range(r: &Option<common::TimeRange>, field: &str) -> Result<(i64, i64), TranscodeError> {
    let r = r
        .as_ref()
        .ok_or_else(|| invalid(format!("{field}: both ends required")))?;
    let from = r
        .start
        .as_ref()
        .and_then(micros_from_timestamp)
        .ok_or_else(|| invalid(format!("{field}.start: required")))?;
    let to = r
        .end
        .as_ref()
        .and_then(micros_from_timestamp)
        .ok_or_else(|| invalid(format!("{field}.end: required")))?;
    if to <= from {
        return Err(invalid(format!("{field}: end must be after start")));
    }
    if (to - from) as u128 > MAX_RANGE.as_micros() {
        return Err(invalid(format!(
            "{field}: at most {} days per job",
            MAX_RANGE.as_secs() / 86_400
        )));
    }
    Ok((from, to))
}

fn codec(c: i32, field: &str) -> Result<Codec, TranscodeError> {
    match common::VideoCodec::try_from(c) {
        Ok(common::VideoCodec::Unspecified) | Ok(common::VideoCodec::H264) => Ok(Codec::H264),
        Ok(common::VideoCodec::H265) => Ok(Codec::H265),
        Err(_) => Err(invalid(format!("{field}: unknown codec {c}"))),
    }
}

fn preset(p: i32, field: &str) -> Result<pb::EncoderPreset, TranscodeError> {
    match pb::EncoderPreset::try_from(p) {
        Ok(pb::EncoderPreset::Unspecified) => Ok(pb::EncoderPreset::Balanced),
        Ok(p) => Ok(p),
        Err(_) => Err(invalid(format!("{field}: unknown preset {p}"))),
    }
}

fn profile_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Checks a submitted spec.
/// The site a job is about, read before anything else so that the caller is authorised on it
/// before the rest of the spec is checked (a caller without the right learns nothing from
/// validation messages).
pub fn site(spec: &Option<pb::JobSpec>) -> Result<String, TranscodeError> {
    let kind = spec
        .as_ref()
        .and_then(|s| s.kind.as_ref())
        .ok_or_else(|| invalid("spec: one of rendition, thumbnails or export is required"))?;
    let (c, field) = match kind {
        pb::job_spec::Kind::Rendition(r) => (&r.camera, "spec.rendition.camera"),
        pb::job_spec::Kind::Thumbnails(t) => (&t.camera, "spec.thumbnails.camera"),
        pb::job_spec::Kind::Export(e) => (&e.camera, "spec.export.camera"),
    };
    Ok(camera(c, field)?.0)
}

pub fn parse(spec: &Option<pb::JobSpec>) -> Result<Work, TranscodeError> {
    let kind = spec
        .as_ref()
        .and_then(|s| s.kind.as_ref())
        .ok_or_else(|| invalid("spec: one of rendition, thumbnails or export is required"))?;
    match kind {
        pb::job_spec::Kind::Rendition(r) => {
            let (site, camera) = camera(&r.camera, "spec.rendition.camera")?;
            let (from_us, to_us) = range(&r.range, "spec.rendition.range")?;
            if !profile_ok(&r.profile) {
                return Err(invalid(
                    "spec.rendition.profile: 1-64 characters of a-z, 0-9, '-' and '.', e.g. \
                     360p-500k",
                ));
            }
            if !(MIN_BITRATE..=MAX_BITRATE).contains(&r.target_bitrate_bps) {
                return Err(invalid(format!(
                    "spec.rendition.target_bitrate_bps: required, between {MIN_BITRATE} and \
                     {MAX_BITRATE}"
                )));
            }
            if r.max_height != 0 && !(16..=4320).contains(&r.max_height) {
                return Err(invalid("spec.rendition.max_height: 0 or 16..=4320"));
            }
            if !(r.max_fps == 0.0 || (1.0..=120.0).contains(&r.max_fps)) {
                return Err(invalid("spec.rendition.max_fps: 0 or 1..=120"));
            }
            Ok(Work {
                site,
                camera,
                from_us,
                to_us,
                kind: Kind::Rendition {
                    profile: r.profile.clone(),
                    bitrate_bps: r.target_bitrate_bps,
                    max_height: r.max_height,
                    max_fps: r.max_fps,
                    codec: codec(r.codec, "spec.rendition.codec")?,
                    preset: preset(r.preset, "spec.rendition.preset")?,
                },
            })
        }
        pb::job_spec::Kind::Thumbnails(t) => {
            let (site, camera) = camera(&t.camera, "spec.thumbnails.camera")?;
            let (from_us, to_us) = range(&t.range, "spec.thumbnails.range")?;
            let width = match t.width {
                0 => crate::config::DEFAULT_THUMBNAIL_WIDTH,
                w if (16..=3840).contains(&w) => w,
                _ => return Err(invalid("spec.thumbnails.width: 0 or 16..=3840")),
            };
            let interval_us = match &t.interval {
                None => None,
                Some(d) => {
                    let us = d.seconds.saturating_mul(1_000_000) + i64::from(d.nanos / 1000);
                    if us < 1_000_000 {
                        return Err(invalid("spec.thumbnails.interval: at least 1s"));
                    }
                    Some(us)
                }
            };
            Ok(Work {
                site,
                camera,
                from_us,
                to_us,
                kind: Kind::Thumbnails { width, interval_us },
            })
        }
        pb::job_spec::Kind::Export(e) => {
            let (site, camera) = camera(&e.camera, "spec.export.camera")?;
            let (from_us, to_us) = range(&e.range, "spec.export.range")?;
            if !e.time_zone.is_empty() && jiff::tz::TimeZone::get(&e.time_zone).is_err() {
                return Err(invalid(format!(
                    "spec.export.time_zone: `{}` is not an IANA time zone (e.g. Europe/Sofia)",
                    e.time_zone
                )));
            }
            if e.privacy_masks.len() > MAX_MASKS {
                return Err(invalid(format!(
                    "spec.export.privacy_masks: at most {MAX_MASKS}"
                )));
            }
            let mut masks = Vec::new();
            for (i, m) in e.privacy_masks.iter().enumerate() {
                let pts = m.area.as_ref().map(|a| a.points.as_slice()).unwrap_or(&[]);
                if pts.len() < 3 || pts.len() > MAX_POINTS {
                    return Err(invalid(format!(
                        "spec.export.privacy_masks[{i}]: a polygon of 3 to {MAX_POINTS} points"
                    )));
                }
                if pts
                    .iter()
                    .any(|p| !(0.0..=1.0).contains(&p.x) || !(0.0..=1.0).contains(&p.y))
                {
                    return Err(invalid(format!(
                        "spec.export.privacy_masks[{i}]: coordinates are normalised, 0..1"
                    )));
                }
                masks.push(pts.iter().map(|p| (p.x, p.y)).collect());
            }
            let bitrate_bps = match e.target_bitrate_bps {
                0 => None,
                b if (MIN_BITRATE..=MAX_BITRATE).contains(&b) => Some(b),
                _ => {
                    return Err(invalid(format!(
                        "spec.export.target_bitrate_bps: 0 or between {MIN_BITRATE} and \
                         {MAX_BITRATE}"
                    )));
                }
            };
            if e.evidence_bundle_id.len() > 128 {
                return Err(invalid(
                    "spec.export.evidence_bundle_id: at most 128 characters",
                ));
            }
            Ok(Work {
                site,
                camera,
                from_us,
                to_us,
                kind: Kind::Export {
                    burn_in: e.burn_in_timestamp,
                    time_zone: e.time_zone.clone(),
                    masks,
                    bitrate_bps,
                    codec: codec(e.codec, "spec.export.codec")?,
                    preset: preset(e.preset, "spec.export.preset")?,
                    blur_people: e.blur_people,
                    evidence_bundle_id: e.evidence_bundle_id.clone(),
                },
            })
        }
    }
}

/// Checks the audit context: a reason is required.
pub fn audit(a: &Option<common::AuditContext>) -> Result<common::AuditContext, TranscodeError> {
    match a {
        Some(a) if !a.reason.trim().is_empty() => {
            if a.reason.len() > 1000 || a.case_id.len() > 200 || a.recipient.len() > 500 {
                return Err(invalid(
                    "audit: reason ≤ 1000, case_id ≤ 200, recipient ≤ 500 bytes",
                ));
            }
            Ok(a.clone())
        }
        _ => Err(invalid(
            "audit.reason: required (every job reads footage; say why, e.g. \"rendition for \
             the partner link\")",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kordon_proto::time::timestamp_from_micros;

    fn cam() -> Option<common::CameraRef> {
        Some(common::CameraRef {
            site: "burgas".into(),
            camera: "gate-1".into(),
        })
    }
    fn rng(a: i64, b: i64) -> Option<common::TimeRange> {
        Some(common::TimeRange {
            start: Some(timestamp_from_micros(a)),
            end: Some(timestamp_from_micros(b)),
        })
    }
    fn rendition(f: impl FnOnce(&mut pb::RenditionSpec)) -> Option<pb::JobSpec> {
        let mut r = pb::RenditionSpec {
            camera: cam(),
            range: rng(0, 120_000_000),
            profile: "360p-500k".into(),
            target_bitrate_bps: 500_000,
            max_height: 360,
            ..Default::default()
        };
        f(&mut r);
        Some(pb::JobSpec {
            kind: Some(pb::job_spec::Kind::Rendition(r)),
        })
    }

    #[test]
    fn a_good_rendition_parses_with_defaults() {
        let w = parse(&rendition(|_| {})).unwrap();
        assert_eq!(w.job_kind(), pb::JobKind::Rendition);
        match w.kind {
            Kind::Rendition { codec, preset, .. } => {
                assert_eq!(codec, Codec::H264);
                assert_eq!(preset, pb::EncoderPreset::Balanced);
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases: Vec<(Option<pb::JobSpec>, &str)> = vec![
            (None, "spec:"),
            (rendition(|r| r.camera = None), "spec.rendition.camera"),
            (
                rendition(|r| r.camera.as_mut().unwrap().camera = "../x".into()),
                "spec.rendition.camera.camera",
            ),
            (rendition(|r| r.range = rng(5, 5)), "spec.rendition.range"),
            (
                rendition(|r| r.range = rng(0, 8 * 86_400_000_000)),
                "spec.rendition.range",
            ),
            (
                rendition(|r| r.profile = "High/Q".into()),
                "spec.rendition.profile",
            ),
            (
                rendition(|r| r.target_bitrate_bps = 0),
                "spec.rendition.target_bitrate_bps",
            ),
            (rendition(|r| r.max_height = 8), "spec.rendition.max_height"),
            (rendition(|r| r.max_fps = 0.5), "spec.rendition.max_fps"),
            (rendition(|r| r.codec = 9), "spec.rendition.codec"),
            (
                Some(pb::JobSpec {
                    kind: Some(pb::job_spec::Kind::Export(pb::ExportSpec {
                        camera: cam(),
                        range: rng(0, 1),
                        time_zone: "Mars/Olympus".into(),
                        ..Default::default()
                    })),
                }),
                "spec.export.time_zone",
            ),
            (
                Some(pb::JobSpec {
                    kind: Some(pb::job_spec::Kind::Export(pb::ExportSpec {
                        camera: cam(),
                        range: rng(0, 1),
                        privacy_masks: vec![pb::PrivacyMask {
                            area: Some(common::Polygon {
                                points: vec![
                                    common::Point { x: 0.0, y: 0.0 },
                                    common::Point { x: 2.0, y: 0.0 },
                                    common::Point { x: 0.0, y: 1.0 },
                                ],
                            }),
                        }],
                        ..Default::default()
                    })),
                }),
                "spec.export.privacy_masks[0]",
            ),
            (
                Some(pb::JobSpec {
                    kind: Some(pb::job_spec::Kind::Thumbnails(pb::ThumbnailsSpec {
                        camera: cam(),
                        range: rng(0, 1),
                        interval: Some(prost_types::Duration {
                            seconds: 0,
                            nanos: 5,
                        }),
                        ..Default::default()
                    })),
                }),
                "spec.thumbnails.interval",
            ),
        ];
        for (spec, field) in cases {
            match parse(&spec) {
                Err(TranscodeError::Invalid(m)) => assert!(m.starts_with(field), "{m} vs {field}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(audit(&None).is_err());
        assert!(
            audit(&Some(common::AuditContext {
                reason: "  ".into(),
                ..Default::default()
            }))
            .is_err()
        );
        assert!(
            audit(&Some(common::AuditContext {
                reason: "case".into(),
                ..Default::default()
            }))
            .is_ok()
        );
    }
}
