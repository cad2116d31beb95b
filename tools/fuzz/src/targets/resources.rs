//! Kubernetes resources through the operator's render path: a JSON document
//! `{"site": Site, "cameras": [Camera], "rules": [AlertRule]}` as the apiserver hands them to
//! the operator, rendered into the Site's workloads and configuration, each camera into
//! ingest's and detection's view, detection's shards, and each rule's verdict.
//!
//! The apiserver checks the CRDs' schema before the operator sees a resource, so some inputs
//! here cannot reach a real operator; the operator must still never panic on them.

use std::sync::Arc;

use kordon_operator::config::OperatorConfig;
use kordon_operator::crd::{AlertRule, Camera, Site};
use kordon_operator::render::{TlsMounts, render};
use serde_json::Value;

pub fn run(input: &[u8]) -> String {
    let Ok(doc) = serde_json::from_slice::<Value>(input) else {
        return "not JSON".into();
    };
    let Some(site) = doc.get("site").cloned() else {
        return "no site".into();
    };
    let mut site: Site = match serde_json::from_value(site) {
        Ok(s) => s,
        Err(e) => return format!("site refused: {}", classify(&e)),
    };
    // What the apiserver always sets.
    let meta = &mut site.metadata;
    meta.name.get_or_insert_with(|| "burgas".into());
    meta.namespace.get_or_insert_with(|| "kordon".into());
    meta.uid
        .get_or_insert_with(|| "0b5e3f4e-1f60-4f1e-9d43-6a1c2f9d7a10".into());
    let name = meta.name.clone().unwrap_or_default();

    let mut cameras: Vec<Arc<Camera>> = Vec::new();
    for c in doc
        .get("cameras")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match serde_json::from_value::<Camera>(c.clone()) {
            Ok(mut c) => {
                c.metadata.name.get_or_insert_with(|| "cam".into());
                c.metadata.namespace.get_or_insert_with(|| "kordon".into());
                cameras.push(Arc::new(c));
            }
            Err(e) => return format!("camera refused: {}", classify(&e)),
        }
    }
    let mut rules: Vec<AlertRule> = Vec::new();
    for r in doc
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match serde_json::from_value::<AlertRule>(r.clone()) {
            Ok(mut r) => {
                r.metadata.name.get_or_insert_with(|| "rule".into());
                r.metadata.namespace.get_or_insert_with(|| "kordon".into());
                rules.push(r);
            }
            Err(e) => return format!("rule refused: {}", classify(&e)),
        }
    }

    let verdicts = rules
        .iter()
        .filter(|r| kordon_operator::alerting::verdict(r, Some(&site)).is_ok())
        .count();
    for camera in &cameras {
        let _ = kordon_operator::ingest::camera_spec(
            &name,
            camera,
            site.spec.ingest.segment_seconds,
            None,
        );
        let _ = kordon_operator::detection::detection_camera(&name, camera, None);
    }
    let shards = kordon_operator::detection::shards(&site, &cameras).len();
    let rendered = render(
        &site,
        &OperatorConfig::default(),
        &TlsMounts::for_site(&site),
        &rules,
    );
    match rendered {
        Ok(o) => format!(
            "ok: {} config maps, {} shards, {} rules accepted",
            o.config_maps.len(),
            shards,
            verdicts
        ),
        Err(e) => format!(
            "render refused: {}",
            e.to_string().split(':').next().unwrap_or("")
        ),
    }
}

fn classify(e: &serde_json::Error) -> String {
    // "unknown field `x`", "invalid type: …": the words before the first backtick or colon.
    e.to_string()
        .split(['`', ':'])
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

pub fn seeds() -> Vec<Vec<u8>> {
    use serde_json::json;
    let site = json!({
        "apiVersion": "kordon.io/v1alpha1", "kind": "Site",
        "metadata": {"name": "burgas", "namespace": "kordon"},
        "spec": {
            "displayName": "Burgas Regional Directorate", "country": "BG",
            "timeZone": "Europe/Sofia",
            "storage": {"bucket": "kordon-burgas", "endpoint": "http://rgw.storage:7480",
                        "retentionDays": 30},
            "ingest": {"replicas": 3, "segmentSeconds": 6},
            "detection": {"replicas": 2, "framesPerSecond": 4.0},
            "transcode": {"workers": 2, "thumbnails": {"automatic": true}},
        }
    });
    let camera = |name: &str| {
        json!({
            "apiVersion": "kordon.io/v1alpha1", "kind": "Camera",
            "metadata": {"name": name, "namespace": "kordon"},
            "spec": {
                "site": "burgas",
                "streams": {"record": format!("rtsp://10.1.0.1:554/{name}/main"),
                            "detect": format!("rtsp://10.1.0.1:554/{name}/sub")},
                "detection": {
                    "zones": [{"name": "gate", "points": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}],
                    "lines": [{"name": "fence", "from": [0.0, 0.8], "to": [1.0, 0.7],
                               "direction": "leftToRight"}],
                    "motion": {"threshold": 0.01},
                },
            }
        })
    };
    let rule = json!({
        "apiVersion": "kordon.io/v1alpha1", "kind": "AlertRule",
        "metadata": {"name": "night-gate", "namespace": "kordon"},
        "spec": {
            "site": "burgas", "severity": "high", "classes": ["person"],
            "zone": {"zones": ["gate"], "minDwell": "5s"},
            "schedule": {"windows": [{"days": ["mon", "tue"], "start": "22:00", "end": "06:00"}]},
            "cooldown": "1m",
        }
    });
    vec![
        serde_json::to_vec(&json!({"site": site, "cameras": [camera("gate-1"), camera("gate-2")], "rules": [rule]}))
            .expect("JSON"),
        serde_json::to_vec(&json!({"site": site})).expect("JSON"),
    ]
}

pub const WORDS: &[&[u8]] = &[
    b"\"replicas\": ",
    b"\"framesPerSecond\": ",
    b"\"segmentSeconds\": ",
    b"\"points\": [[",
    b"\"zones\": [",
    b"\"lines\": [",
    b"\"name\": \"",
    b"\"site\": \"",
    b"-2147483648",
    b"2147483647",
    b"1e308",
    b"-0.0",
    b"NaN",
    b"null",
    b"[]",
    b"{}",
    b"\"../x\"",
    b"\"\"",
];
