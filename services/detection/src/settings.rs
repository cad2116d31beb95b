//! One camera's detection settings: a `DetectionCamera` from ApplyCameras (or the standalone
//! config) checked and turned into what the pipeline runs — the stream to open, how to decode
//! it, and the scene (classes, filters, zones, lines, masks, motion gate).
//!
//! Every error names the camera and the field, e.g. `burgas/gate-1: config.zones[0].area: a
//! polygon needs at least 3 points, got 2`, and nothing is applied when one camera of a request
//! is invalid.

use std::collections::BTreeMap;
use std::time::Duration;

use kordon_media::StreamConfig;
use kordon_media::decode::{DEFAULT_FPS, DecodeConfig, MAX_FPS};
use kordon_proto::common::v1 as common;
use kordon_proto::detection::v1 as pb;
use kordon_vision::{
    ClassFilter, LineConfig, LineDirection, MotionConfig, Point, SceneConfig, ZoneConfig,
};

use crate::DetectionError;

/// The classes reported when a camera names none: people and the vehicles of a road.
pub const DEFAULT_CLASSES: [&str; 6] = ["person", "bicycle", "car", "motorcycle", "bus", "truck"];
/// Detections below this confidence are dropped when a camera sets none.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;
/// Motion threshold (fraction of the unmasked frame) when a camera sets none.
pub const DEFAULT_MOTION_THRESHOLD: f32 = 0.002;
/// Detector keeps running this long after motion stops, when a camera sets none.
pub const DEFAULT_MOTION_HOLD: Duration = Duration::from_secs(2);

/// A camera as the pipeline runs it.
#[derive(Debug, Clone)]
pub struct CameraSettings {
    pub site: String,
    pub name: String,
    pub disabled: bool,
    pub stream: StreamConfig,
    pub decode: DecodeConfig,
    pub scene: SceneConfig,
    pub generation: i64,
}

impl CameraSettings {
    /// `site/name`, for logs and errors.
    pub fn key(&self) -> String {
        format!("{}/{}", self.site, self.name)
    }
}

fn point(p: &common::Point) -> Point {
    Point::new(p.x, p.y)
}

fn polygon(p: &Option<common::Polygon>) -> Vec<Point> {
    p.as_ref()
        .map(|p| p.points.iter().map(point).collect())
        .unwrap_or_default()
}

/// Checks one camera against the model's labels and builds its settings.
pub fn from_proto(
    c: &pb::DetectionCamera,
    labels: &[&str],
) -> Result<CameraSettings, DetectionError> {
    let (site, name) = match &c.camera {
        Some(r) if !r.site.is_empty() && !r.camera.is_empty() => (r.site.clone(), r.camera.clone()),
        _ => {
            return Err(DetectionError::Invalid(
                "camera.site and camera.camera are required".into(),
            ));
        }
    };
    let bad = |field: &str, message: String| {
        DetectionError::Invalid(format!("{site}/{name}: {field}: {message}"))
    };
    kordon_objects::key::validate_name("site", &site)
        .map_err(|e| bad("camera.site", e.to_string()))?;
    kordon_objects::key::validate_name("camera", &name)
        .map_err(|e| bad("camera.camera", e.to_string()))?;
    let url = c.detect_url.trim();
    if !(url.starts_with("rtsp://") || url.starts_with("rtsps://")) {
        return Err(bad(
            "detect_url",
            "must be an rtsp:// or rtsps:// URL".into(),
        ));
    }
    if let Ok(u) = url::Url::parse(url)
        && (!u.username().is_empty() || u.password().is_some())
    {
        return Err(bad(
            "detect_url",
            "must not carry credentials: name a Secret in credentials".into(),
        ));
    }
    let (username, password) = match (&c.credentials, &c.resolved_credentials) {
        (_, Some(r)) if r.username.is_empty() => {
            return Err(bad("resolved_credentials", "empty user name".into()));
        }
        (_, Some(r)) => (Some(r.username.clone()), Some(r.password.clone())),
        (Some(r), None) => {
            return Err(bad(
                "resolved_credentials",
                format!(
                    "credentials name Secret `{}` but nothing was resolved: the operator \
                     resolves it",
                    r.secret_name
                ),
            ));
        }
        (None, None) => (None, None),
    };
    let transport = match pb::RtspTransport::try_from(c.transport) {
        Ok(pb::RtspTransport::Udp) => kordon_media::Transport::Udp,
        Ok(_) => kordon_media::Transport::Tcp,
        Err(_) => return Err(bad("transport", format!("unknown value {}", c.transport))),
    };
    let cfg = c.config.clone().unwrap_or_default();
    let fps = if cfg.analysis_fps == 0.0 {
        DEFAULT_FPS
    } else {
        cfg.analysis_fps
    };
    if !(fps > 0.0 && fps <= MAX_FPS) {
        return Err(bad(
            "config.analysis_fps",
            format!("must be in (0, {MAX_FPS}], got {}", cfg.analysis_fps),
        ));
    }
    let classes: Vec<String> = if cfg.classes.is_empty() {
        DEFAULT_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        cfg.classes.clone()
    };
    for (i, class) in classes.iter().enumerate() {
        if !labels.contains(&class.as_str()) {
            return Err(bad(
                &format!("config.classes[{i}]"),
                format!("`{class}` is not a label of the model (see GetDetectorStatus)"),
            ));
        }
    }
    let min_score = if cfg.min_confidence == 0.0 {
        DEFAULT_MIN_CONFIDENCE
    } else {
        cfg.min_confidence
    };
    if !(0.0..=1.0).contains(&min_score) {
        return Err(bad(
            "config.min_confidence",
            format!("must be within 0..1, got {min_score}"),
        ));
    }
    let gate = cfg.motion.unwrap_or_default();
    let hold = match &gate.hold {
        None => DEFAULT_MOTION_HOLD,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err(bad("config.motion.hold", "must not be negative".into()));
        }
        Some(d) => Duration::new(d.seconds as u64, d.nanos as u32),
    };
    let motion = MotionConfig {
        disabled: gate.disabled,
        threshold: if gate.threshold == 0.0 {
            DEFAULT_MOTION_THRESHOLD
        } else {
            gate.threshold
        },
        hold,
        ..MotionConfig::default()
    };
    let filters = class_filters(&cfg.filters, &classes, min_score).map_err(|(f, m)| bad(&f, m))?;
    let scene = SceneConfig {
        classes,
        min_score,
        zones: cfg
            .zones
            .iter()
            .map(|z| ZoneConfig {
                name: z.name.clone(),
                area: polygon(&z.area),
                inertia: 0,
            })
            .collect(),
        lines: cfg
            .lines
            .iter()
            .map(|l| LineConfig {
                name: l.name.clone(),
                a: l.a
                    .as_ref()
                    .map(point)
                    .unwrap_or(Point::new(f32::NAN, f32::NAN)),
                b: l.b
                    .as_ref()
                    .map(point)
                    .unwrap_or(Point::new(f32::NAN, f32::NAN)),
                direction: match pb::LineDirection::try_from(l.direction) {
                    Ok(pb::LineDirection::LeftToRight) => LineDirection::LeftToRight,
                    Ok(pb::LineDirection::RightToLeft) => LineDirection::RightToLeft,
                    _ => LineDirection::Both,
                },
            })
            .collect(),
        masks: cfg
            .masks
            .iter()
            .map(|m| m.points.iter().map(point).collect())
            .collect(),
        motion,
        filters,
        ..SceneConfig::default()
    };
    // The scene checks polygons, ranges and duplicate names; its field names are relative to
    // the scene, ours to the request.
    kordon_vision::Scene::new(scene.clone()).map_err(|e| bad("config", e.to_string()))?;
    Ok(CameraSettings {
        site,
        name: name.clone(),
        disabled: cfg.disabled,
        stream: StreamConfig {
            name: format!(
                "{}-{}",
                c.camera.as_ref().map(|r| r.site.as_str()).unwrap_or(""),
                name
            ),
            url: url.to_string(),
            transport,
            username,
            password,
        },
        decode: DecodeConfig {
            fps,
            ..DecodeConfig::default()
        },
        scene,
        generation: c.generation,
    })
}

/// The per class filters of a request, defaults filled in (see `kordon.detection.v1.ClassFilter`).
/// Ranges are checked by the scene; here that each names one of the camera's classes, once.
fn class_filters(
    filters: &[pb::ClassFilter],
    classes: &[String],
    min_score: f32,
) -> Result<BTreeMap<String, ClassFilter>, (String, String)> {
    let mut out = BTreeMap::new();
    for (i, f) in filters.iter().enumerate() {
        let field = format!("config.filters[{i}].label");
        if !classes.contains(&f.label) {
            return Err((
                field,
                format!("`{}` is not one of the camera's classes", f.label),
            ));
        }
        let own_min = if f.min_score == 0.0 {
            min_score
        } else {
            f.min_score
        };
        let filter = ClassFilter {
            min_score: own_min,
            threshold: if f.threshold == 0.0 {
                own_min
            } else {
                f.threshold
            },
            min_area: f.min_area,
            max_area: if f.max_area == 0.0 { 1.0 } else { f.max_area },
            min_ratio: f.min_ratio,
            max_ratio: if f.max_ratio == 0.0 {
                f32::MAX
            } else {
                f.max_ratio
            },
        };
        if out.insert(f.label.clone(), filter).is_some() {
            return Err((field, format!("`{}` has a filter already", f.label)));
        }
    }
    Ok(out)
}

/// A camera's detection settings as written in the `kordon` config file (standalone, or a
/// service run without the operator), under the camera:
///
/// ```yaml
/// detection:
///   classes: [person, car]          # default: person, bicycle, car, motorcycle, bus, truck
///   min_confidence: 0.5
///   analysis_fps: 5
///   motion: { disabled: false, threshold: 0.002, hold: 2s }
///   zones:  [{ name: road, area: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]] }]
///   masks:  [[[0, 0], [0.2, 0], [0.2, 0.1]]]
///   lines:  [{ name: crossing, from: [0.5, 0], to: [0.5, 1], direction: left-to-right }]
///   filters:                        # per class; see kordon.detection.v1.ClassFilter
///     person: { min_score: 0.6, threshold: 0.7, min_area: 0.0005, max_ratio: 1.2 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraDetectionYaml {
    pub disabled: bool,
    pub classes: Vec<String>,
    pub min_confidence: f32,
    pub analysis_fps: f64,
    pub motion: MotionYaml,
    pub zones: Vec<ZoneYaml>,
    pub masks: Vec<Vec<[f32; 2]>>,
    pub lines: Vec<LineYaml>,
    /// By class label.
    pub filters: BTreeMap<String, ClassFilterYaml>,
}

/// Filters for one class; 0 (or absent) means the default, as in the API.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassFilterYaml {
    pub min_score: f32,
    pub threshold: f32,
    pub min_area: f32,
    pub max_area: f32,
    pub min_ratio: f32,
    pub max_ratio: f32,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionYaml {
    pub disabled: bool,
    pub threshold: f32,
    #[serde(with = "humantime_serde")]
    pub hold: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneYaml {
    pub name: String,
    pub area: Vec<[f32; 2]>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineYaml {
    pub name: String,
    pub from: [f32; 2],
    pub to: [f32; 2],
    /// `both` (default), `left-to-right` or `right-to-left`, as seen standing on `from`
    /// facing `to`.
    #[serde(default)]
    pub direction: DirectionYaml,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionYaml {
    #[default]
    Both,
    LeftToRight,
    RightToLeft,
}

fn yaml_point([x, y]: [f32; 2]) -> common::Point {
    common::Point { x, y }
}

impl CameraDetectionYaml {
    /// The API form of these settings.
    pub fn to_proto(&self) -> pb::DetectionConfig {
        pb::DetectionConfig {
            disabled: self.disabled,
            classes: self.classes.clone(),
            min_confidence: self.min_confidence,
            analysis_fps: self.analysis_fps,
            motion: Some(pb::MotionGate {
                disabled: self.motion.disabled,
                threshold: self.motion.threshold,
                hold: self.motion.hold.map(|d| prost_types::Duration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
            }),
            zones: self
                .zones
                .iter()
                .map(|z| pb::Zone {
                    name: z.name.clone(),
                    area: Some(common::Polygon {
                        points: z.area.iter().copied().map(yaml_point).collect(),
                    }),
                })
                .collect(),
            masks: self
                .masks
                .iter()
                .map(|m| common::Polygon {
                    points: m.iter().copied().map(yaml_point).collect(),
                })
                .collect(),
            lines: self
                .lines
                .iter()
                .map(|l| pb::Line {
                    name: l.name.clone(),
                    a: Some(yaml_point(l.from)),
                    b: Some(yaml_point(l.to)),
                    direction: match l.direction {
                        DirectionYaml::Both => pb::LineDirection::Both,
                        DirectionYaml::LeftToRight => pb::LineDirection::LeftToRight,
                        DirectionYaml::RightToLeft => pb::LineDirection::RightToLeft,
                    } as i32,
                })
                .collect(),
            filters: self
                .filters
                .iter()
                .map(|(label, f)| pb::ClassFilter {
                    label: label.clone(),
                    min_score: f.min_score,
                    threshold: f.threshold,
                    min_area: f.min_area,
                    max_area: f.max_area,
                    min_ratio: f.min_ratio,
                    max_ratio: f.max_ratio,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: &[&str] = &[
        "person",
        "bicycle",
        "car",
        "motorcycle",
        "bus",
        "truck",
        "dog",
    ];

    fn camera() -> pb::DetectionCamera {
        pb::DetectionCamera {
            camera: Some(common::CameraRef {
                site: "burgas".into(),
                camera: "gate-1".into(),
            }),
            detect_url: "rtsp://10.0.0.1/sub".into(),
            generation: 3,
            ..Default::default()
        }
    }

    fn pt(x: f32, y: f32) -> common::Point {
        common::Point { x, y }
    }

    #[test]
    fn defaults_fill_in_what_a_camera_leaves_unset() {
        let s = from_proto(&camera(), LABELS).unwrap();
        assert_eq!(s.scene.classes, DEFAULT_CLASSES);
        assert_eq!(s.scene.min_score, DEFAULT_MIN_CONFIDENCE);
        assert_eq!(s.decode.fps, DEFAULT_FPS);
        assert_eq!(s.scene.motion.threshold, DEFAULT_MOTION_THRESHOLD);
        assert_eq!(s.scene.motion.hold, DEFAULT_MOTION_HOLD);
        assert_eq!(s.generation, 3);
        assert_eq!(s.key(), "burgas/gate-1");
    }

    #[test]
    fn zones_lines_and_masks_are_mapped() {
        let mut c = camera();
        c.config = Some(pb::DetectionConfig {
            classes: vec!["dog".into()],
            min_confidence: 0.4,
            zones: vec![pb::Zone {
                name: "bank".into(),
                area: Some(common::Polygon {
                    points: vec![pt(0.0, 0.5), pt(1.0, 0.5), pt(1.0, 1.0)],
                }),
            }],
            lines: vec![pb::Line {
                name: "road".into(),
                a: Some(pt(0.5, 0.0)),
                b: Some(pt(0.5, 1.0)),
                direction: pb::LineDirection::RightToLeft as i32,
            }],
            masks: vec![common::Polygon {
                points: vec![pt(0.0, 0.0), pt(0.1, 0.0), pt(0.0, 0.1)],
            }],
            ..Default::default()
        });
        let s = from_proto(&c, LABELS).unwrap();
        assert_eq!(s.scene.classes, ["dog"]);
        assert_eq!(s.scene.zones[0].area.len(), 3);
        assert_eq!(s.scene.lines[0].direction, LineDirection::RightToLeft);
        assert_eq!(s.scene.masks.len(), 1);
    }

    #[test]
    fn class_filters_fill_their_defaults_and_name_what_is_wrong() {
        let mut c = camera();
        c.config = Some(pb::DetectionConfig {
            min_confidence: 0.4,
            filters: vec![
                pb::ClassFilter {
                    label: "person".into(),
                    min_score: 0.6,
                    max_ratio: 1.2,
                    ..Default::default()
                },
                pb::ClassFilter {
                    label: "car".into(),
                    threshold: 0.7,
                    min_area: 0.001,
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let s = from_proto(&c, LABELS).unwrap();
        let person = s.scene.filters["person"];
        assert_eq!((person.min_score, person.threshold), (0.6, 0.6));
        assert_eq!((person.max_area, person.max_ratio), (1.0, 1.2));
        let car = s.scene.filters["car"];
        assert_eq!(
            (car.min_score, car.threshold, car.min_area),
            (0.4, 0.7, 0.001)
        );
        assert_eq!(car.max_ratio, f32::MAX);

        // The YAML of a config file says the same.
        let yaml: CameraDetectionYaml = serde_yaml::from_str(
            "min_confidence: 0.4\nfilters:\n  person: { min_score: 0.6, max_ratio: 1.2 }\n  car: { threshold: 0.7, min_area: 0.001 }\n",
        )
        .unwrap();
        let by_label = |mut f: Vec<pb::ClassFilter>| {
            f.sort_by(|a, b| a.label.cmp(&b.label));
            f
        };
        assert_eq!(
            by_label(yaml.to_proto().filters),
            by_label(c.config.clone().unwrap().filters)
        );

        for (filter, expect) in [
            (
                pb::ClassFilter {
                    label: "dog".into(),
                    ..Default::default()
                },
                "config.filters[0].label: `dog` is not one of the camera's classes",
            ),
            (
                pb::ClassFilter {
                    label: "car".into(),
                    min_area: 0.5,
                    max_area: 0.1,
                    ..Default::default()
                },
                "filters.car.max_area",
            ),
            (
                pb::ClassFilter {
                    label: "car".into(),
                    threshold: 1.5,
                    ..Default::default()
                },
                "filters.car.threshold",
            ),
        ] {
            let mut c = camera();
            c.config = Some(pb::DetectionConfig {
                filters: vec![filter],
                ..Default::default()
            });
            let e = from_proto(&c, LABELS).unwrap_err().to_string();
            assert!(e.contains(expect), "{e} should contain {expect}");
        }
        let mut c = camera();
        let car = pb::ClassFilter {
            label: "car".into(),
            ..Default::default()
        };
        c.config = Some(pb::DetectionConfig {
            filters: vec![car.clone(), car],
            ..Default::default()
        });
        let e = from_proto(&c, LABELS).unwrap_err().to_string();
        assert!(
            e.contains("config.filters[1].label: `car` has a filter already"),
            "{e}"
        );
    }

    #[test]
    fn invalid_input_names_camera_and_field() {
        type Change = Box<dyn Fn(&mut pb::DetectionCamera)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.detect_url = "http://x".into()), "detect_url"),
            (
                Box::new(|c| c.detect_url = "rtsp://u:p@10.0.0.1/sub".into()),
                "must not carry credentials",
            ),
            (
                Box::new(|c| {
                    c.config = Some(pb::DetectionConfig {
                        classes: vec!["unicorn".into()],
                        ..Default::default()
                    })
                }),
                "config.classes[0]",
            ),
            (
                Box::new(|c| {
                    c.config = Some(pb::DetectionConfig {
                        zones: vec![pb::Zone {
                            name: "z".into(),
                            area: Some(common::Polygon {
                                points: vec![pt(0.0, 0.0), pt(1.0, 1.0)],
                            }),
                        }],
                        ..Default::default()
                    })
                }),
                "at least 3 points",
            ),
            (
                Box::new(|c| {
                    c.config = Some(pb::DetectionConfig {
                        analysis_fps: 60.0,
                        ..Default::default()
                    })
                }),
                "config.analysis_fps",
            ),
            (
                Box::new(|c| {
                    c.credentials = Some(pb::CredentialsRef {
                        secret_name: "cam".into(),
                        ..Default::default()
                    })
                }),
                "resolved_credentials",
            ),
        ];
        for (change, expect) in cases {
            let mut c = camera();
            change(&mut c);
            let e = from_proto(&c, LABELS).unwrap_err().to_string();
            assert!(e.starts_with("burgas/gate-1: "), "{e}");
            assert!(e.contains(expect), "{e} should contain {expect}");
        }
    }
}
