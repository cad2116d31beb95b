//! Test objects and a mocked apiserver that asserts each request (kube-rs/controller-rs's
//! `fixtures.rs` pattern).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{Camera, CameraSpec, Site, SiteSpec, SiteStorage, Streams};

pub const NS: &str = "kordon";

pub fn site(name: &str, replicas: i32) -> Site {
    let mut s = Site::new(
        name,
        SiteSpec {
            display_name: None,
            country: Some("BG".into()),
            time_zone: None,
            storage: SiteStorage {
                bucket: format!("kordon-{name}"),
                ..SiteStorage::default()
            },
            database: None,
            ingest: crate::crd::IngestSpec {
                replicas,
                ..Default::default()
            },
            detection: Default::default(),
            transcode: Default::default(),
            alert_sinks: Vec::new(),
            sharing: Vec::new(),
            tls_secret: None,
        },
    );
    s.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    s
}

pub fn camera(name: &str, site: &str) -> Camera {
    let mut c = Camera::new(
        name,
        CameraSpec {
            site: site.into(),
            streams: Streams {
                record: format!("rtsp://10.0.0.1:554/{name}/main"),
                detect: None,
                transport: Default::default(),
            },
            credentials: None,
            recording: Default::default(),
            retention_days: None,
            detection: Default::default(),
            location: None,
        },
    );
    c.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    c
}
