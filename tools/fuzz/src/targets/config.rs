//! Configuration files: YAML read through figment (as `kordon_runtime::config::load` does)
//! into each service's typed configuration, then its `validate()`. The first byte of the
//! input picks the section; the rest is the YAML.

use figment::Figment;
use figment::providers::{Format, Yaml};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn check<T, E: std::fmt::Display>(yaml: &str, validate: impl Fn(&T) -> Result<(), E>) -> String
where
    T: DeserializeOwned,
{
    match Figment::from(Yaml::string(yaml)).extract::<T>() {
        Ok(config) => match validate(&config) {
            Ok(()) => "ok: valid".into(),
            Err(e) => format!("invalid: {}", first_words(&e.to_string())),
        },
        Err(e) => format!("unreadable: {}", e.kind),
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The sections, in the order the first byte picks them.
const SECTIONS: &[&str] = &[
    "ingest",
    "storage",
    "detection",
    "alerting",
    "transcode",
    "operator",
    "partners",
];

pub fn run(input: &[u8]) -> String {
    let Some((&pick, rest)) = input.split_first() else {
        return "empty".into();
    };
    let Ok(yaml) = std::str::from_utf8(rest) else {
        return "not UTF-8".into();
    };
    let section = SECTIONS[usize::from(pick) % SECTIONS.len()];
    let outcome = match section {
        "ingest" => check(yaml, kordon_ingest::config::IngestConfig::validate),
        "storage" => check(yaml, kordon_storage::config::StorageConfig::validate),
        "detection" => check(
            yaml,
            kordon_detection::config::DetectionServiceConfig::validate,
        ),
        "alerting" => check(yaml, kordon_alerting::config::AlertingConfig::validate),
        "transcode" => check(yaml, kordon_transcode::config::TranscodeConfig::validate),
        "operator" => check(yaml, kordon_operator::config::OperatorConfig::validate),
        _ => check(yaml, kordon_runtime::partner::PartnersConfig::validate),
    };
    format!("{section} {outcome}")
}

fn seed<T: Serialize>(section: &str, config: &T) -> Vec<u8> {
    let pick = SECTIONS
        .iter()
        .position(|s| *s == section)
        .expect("a known section") as u8;
    let mut out = vec![pick];
    out.extend(serde_yaml::to_string(config).expect("YAML").into_bytes());
    out
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = vec![
        seed("ingest", &kordon_ingest::config::IngestConfig::default()),
        seed("storage", &kordon_storage::config::StorageConfig::default()),
        seed(
            "detection",
            &kordon_detection::config::DetectionServiceConfig::default(),
        ),
        seed(
            "alerting",
            &kordon_alerting::config::AlertingConfig::default(),
        ),
        seed(
            "transcode",
            &kordon_transcode::config::TranscodeConfig::default(),
        ),
        seed(
            "operator",
            &kordon_operator::config::OperatorConfig::default(),
        ),
    ];
    // A site's ingest with cameras, as the operator renders it.
    let mut ingest = vec![0u8];
    ingest.extend_from_slice(
        b"site: burgas\nsegment_duration: 6s\ncameras:\n  - name: gate-1\n    url: rtsp://10.1.0.1:554/main\n    transport: tcp\n  - name: gate-2\n    url: rtsp://user:pa%40ss@10.1.0.2/h265\n",
    );
    out.push(ingest);
    out
}

pub const WORDS: &[&[u8]] = &[
    b"\n",
    b": ",
    b"- ",
    b"  ",
    b"site: ",
    b"cameras:\n",
    b"name: ",
    b"url: rtsp://",
    b"segment_duration: ",
    b"retention:",
    b"workers: ",
    b"0",
    b"-1",
    b"18446744073709551616",
    b"1e400",
    b"0s",
    b"999999999999d",
    b"~",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"[",
    b"{",
    b"\"",
    b"'",
    b"../../",
];
