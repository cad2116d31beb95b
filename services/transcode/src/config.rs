//! Transcode configuration: the `transcode:` section of the `kordon` config file.
//!
//! ```yaml
//! transcode:
//!   database_url: postgres://…         # default: SQLite in <data_dir>/transcode.db
//!   storage: { url: https://storage:8470, ca_file: …, cert_file: …, key_file: … }
//!   workers: 1                         # jobs run at once by this process
//!   threads: 1                         # encoder threads per job (1: the same bytes every run)
//!   max_attempts: 3                    # runs of a job before an outage fails it
//!   encoder: auto                      # auto (hardware when present) | software | an element
//!   scratch_dir: /var/lib/kordon/transcode   # default: <data_dir>/transcode
//!   retention: 30d                     # finished jobs are forgotten after this
//!   thumbnails:                        # thumbnails for every new segment, without a job
//!     automatic: false
//!     width: 320
//!     sites: [burgas]                  # whose segments; standalone: its own sites
//!     poll: 30s                        # each poll is one logged footage read per camera
//!   detector:                          # the person detector of ExportSpec.blur_people
//!     library: /opt/onnxruntime/libonnxruntime.so   # default: ORT_DYLIB_PATH / project venv
//!     threads: 2
//! time_zones: { burgas: Europe/Sofia, edirne: Europe/Istanbul }   # burned-in time
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kordon_runtime::client::ServiceClientConfig;
use serde::{Deserialize, Serialize};

use crate::TranscodeError;

/// Most jobs one process runs at once.
pub const MAX_WORKERS: u32 = 64;
/// Finished jobs are kept this long by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Width of thumbnails by default.
pub const DEFAULT_THUMBNAIL_WIDTH: u32 = 320;

/// Which encoder jobs use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// A hardware encoder the registry has and that opens, else the software one.
    #[default]
    Auto,
    /// `x264enc`/`x265enc` (or `openh264enc`) even where hardware is present: the same bytes
    /// on every machine, which resumable jobs and evidence reproducibility want.
    Software,
    /// One GStreamer element by name, e.g. `vah264enc`.
    #[serde(untagged)]
    Element(String),
}

/// Thumbnails made for every new segment as it is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoThumbnails {
    pub automatic: bool,
    /// JPEG width in pixels (16..=3840); height follows the aspect ratio.
    pub width: u32,
    /// Sites whose cameras get thumbnails; empty means the process's own sites (standalone).
    pub sites: Vec<String>,
    /// How often storage is asked for new segments.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for AutoThumbnails {
    fn default() -> Self {
        AutoThumbnails {
            automatic: false,
            width: DEFAULT_THUMBNAIL_WIDTH,
            sites: Vec::new(),
            poll: Duration::from_secs(30),
        }
    }
}

/// The person detector used to blur people in viewer copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// The ONNX model; unset means NanoDet-m built into the binary.
    pub model: Option<PathBuf>,
    /// The ONNX Runtime shared library; unset means `ORT_DYLIB_PATH`, then the project venv.
    pub library: Option<PathBuf>,
    /// Inference threads.
    pub threads: usize,
    /// Lowest person score that is blurred: lower than detection's reporting threshold, since
    /// a missed face is worse than a blurred bush.
    pub min_score: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model: None,
            library: None,
            threads: 2,
            min_score: 0.25,
        }
    }
}

/// How this transcode process works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// `sqlite://…` or `postgres://…`; unset means SQLite in the data directory.
    pub database_url: Option<String>,
    /// The storage service: source segments are listed there, outputs registered.
    pub storage: ServiceClientConfig,
    /// Jobs run at once (1..=64).
    pub workers: u32,
    /// Encoder threads per job; 0 lets the encoder decide. With more than one, `x264enc`'s
    /// output varies from run to run (its threaded rate control), so a resumed job's bytes
    /// would differ from an uninterrupted one's; the default, 1, keeps them equal, and jobs
    /// run side by side (`workers`) use the other cores.
    pub threads: u32,
    /// Runs of a job (a restart or an outage interrupting it) before it fails (1..=20).
    pub max_attempts: u32,
    pub encoder: EncoderChoice,
    /// Where unfinished viewer copies keep their parts; unset means `<data_dir>/transcode`.
    pub scratch_dir: Option<PathBuf>,
    /// Finished jobs are forgotten after this (their outputs stay).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub thumbnails: AutoThumbnails,
    pub detector: DetectorConfig,
    /// Site → IANA time zone of times burned into its viewer copies when the job names none
    /// (the operator renders each Site's `timeZone`); a site not listed gets UTC.
    pub time_zones: BTreeMap<String, String>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            database_url: None,
            storage: ServiceClientConfig::default(),
            workers: 1,
            threads: 1,
            max_attempts: 3,
            encoder: EncoderChoice::Auto,
            scratch_dir: None,
            retention: DEFAULT_RETENTION,
            thumbnails: AutoThumbnails::default(),
            detector: DetectorConfig::default(),
            time_zones: BTreeMap::new(),
        }
    }
}

impl TranscodeConfig {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), TranscodeError> {
        if let Some(url) = &self.database_url
            && !kordon_db::is_supported_url(url)
        {
            return Err(TranscodeError::config(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(TranscodeError::config(
                "workers",
                format!("must be between 1 and {MAX_WORKERS}"),
            ));
        }
        if self.threads > 64 {
            return Err(TranscodeError::config(
                "threads",
                "must be between 0 and 64",
            ));
        }
        if self.max_attempts == 0 || self.max_attempts > 20 {
            return Err(TranscodeError::config(
                "max_attempts",
                "must be between 1 and 20",
            ));
        }
        if let EncoderChoice::Element(name) = &self.encoder
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(TranscodeError::config(
                "encoder",
                "must be auto, software or a GStreamer element name (e.g. vah264enc)",
            ));
        }
        if self.retention < Duration::from_secs(3600) {
            return Err(TranscodeError::config("retention", "must be at least 1h"));
        }
        let t = &self.thumbnails;
        if !(16..=3840).contains(&t.width) {
            return Err(TranscodeError::config(
                "thumbnails.width",
                "must be between 16 and 3840",
            ));
        }
        if t.poll < Duration::from_secs(1) || t.poll > Duration::from_secs(3600) {
            return Err(TranscodeError::config(
                "thumbnails.poll",
                "must be between 1s and 1h",
            ));
        }
        for s in &t.sites {
            kordon_objects::validate_name("site", s)
                .map_err(|e| TranscodeError::config("thumbnails.sites", e.to_string()))?;
        }
        let d = &self.detector;
        if d.threads == 0 || d.threads > 64 {
            return Err(TranscodeError::config(
                "detector.threads",
                "must be between 1 and 64",
            ));
        }
        if !(d.min_score > 0.0 && d.min_score <= 1.0) {
            return Err(TranscodeError::config(
                "detector.min_score",
                "must be in (0, 1]",
            ));
        }
        for (site, tz) in &self.time_zones {
            if jiff::tz::TimeZone::get(tz).is_err() {
                return Err(TranscodeError::config(
                    &format!("time_zones.{site}"),
                    format!("`{tz}` is not an IANA time zone (e.g. Europe/Sofia)"),
                ));
            }
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self, data_dir: &Path) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", data_dir.join("transcode.db").display()),
        }
    }

    /// The scratch directory in effect.
    pub fn scratch_dir(&self, data_dir: &Path) -> PathBuf {
        self.scratch_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("transcode"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_yaml_round_trips() {
        let c = TranscodeConfig::default();
        c.validate().unwrap();
        let y = "workers: 2\nencoder: software\nthumbnails: {automatic: true, width: 240}\n";
        let c: TranscodeConfig = serde_yaml::from_str(y).unwrap();
        assert_eq!(c.workers, 2);
        assert_eq!(c.encoder, EncoderChoice::Software);
        assert!(c.thumbnails.automatic);
        c.validate().unwrap();
        let c: TranscodeConfig = serde_yaml::from_str("encoder: vah264enc\n").unwrap();
        assert_eq!(c.encoder, EncoderChoice::Element("vah264enc".into()));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (yaml, key) in [
            ("workers: 0", "transcode.workers"),
            ("max_attempts: 0", "transcode.max_attempts"),
            ("encoder: 'x264enc ! fakesink'", "transcode.encoder"),
            ("database_url: mysql://x", "transcode.database_url"),
            ("thumbnails: {width: 8}", "transcode.thumbnails.width"),
            (
                "thumbnails: {sites: ['../x']}",
                "transcode.thumbnails.sites",
            ),
            ("retention: 1m", "transcode.retention"),
            (
                "time_zones: {burgas: Mars/Base}",
                "transcode.time_zones.burgas",
            ),
        ] {
            let c: TranscodeConfig = serde_yaml::from_str(yaml).unwrap();
            match c.validate() {
                Err(TranscodeError::Config { key: k, .. }) => assert_eq!(k, key, "{yaml}"),
                other => panic!("{yaml}: {other:?}"),
            }
        }
        assert!(serde_yaml::from_str::<TranscodeConfig>("wrkers: 1").is_err());
    }
}
