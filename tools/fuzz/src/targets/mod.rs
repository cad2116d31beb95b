//! The fuzz targets: every parser that reads bytes from outside Kordon.

pub mod bundle;
pub mod camera;
pub mod config;
pub mod http;
pub mod identity;
pub mod media;
pub mod resources;

/// A target's state, built once per run (keys, temporary files), then fed input after input.
pub trait Harness {
    /// What the target made of `input`, in a few words ("ok: 3 frames", "refused: expired"):
    /// new outcomes steer the mutations. A panic is a finding.
    fn run(&mut self, input: &[u8]) -> String;
}

impl<F: FnMut(&[u8]) -> String> Harness for F {
    fn run(&mut self, input: &[u8]) -> String {
        self(input)
    }
}

pub struct Target {
    pub name: &'static str,
    /// What it reads, and from whom.
    pub about: &'static str,
    pub setup: fn() -> Box<dyn Harness>,
    /// Inputs made by Kordon's own writers (the kept corpus adds to them).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Words of the format, for the mutations.
    pub dict: &'static [&'static [u8]],
    /// Every generated seed's outcome starts with this: the seeds reach the deep checks.
    pub seeds_reach: &'static str,
}

fn none() -> Vec<Vec<u8>> {
    Vec::new()
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "rtsp",
        about: "RTSP messages from a camera: responses, headers, SDP bodies, interleaved data",
        setup: || Box::new(camera::rtsp),
        seeds: none,
        dict: camera::RTSP_WORDS,
        seeds_reach: "ok",
    },
    Target {
        name: "sdp",
        about: "a camera's session description (DESCRIBE's body)",
        setup: || Box::new(camera::sdp),
        seeds: none,
        dict: camera::SDP_WORDS,
        seeds_reach: "ok",
    },
    Target {
        name: "rtp-h264",
        about: "H.264 over RTP with its fmtp parameters, depacketized and recorded into fMP4",
        setup: || Box::new(|i: &[u8]| camera::rtp("h264", i)),
        seeds: none,
        dict: camera::RTP_WORDS,
        seeds_reach: "frames",
    },
    Target {
        name: "rtp-h265",
        about: "H.265 over RTP with its fmtp parameters, depacketized and recorded into fMP4",
        setup: || Box::new(|i: &[u8]| camera::rtp("h265", i)),
        seeds: none,
        dict: camera::RTP_WORDS,
        seeds_reach: "frames",
    },
    Target {
        name: "rtcp",
        about: "a camera's RTCP compound packets (sender reports set wall-clock time)",
        setup: || Box::new(camera::rtcp),
        seeds: none,
        dict: camera::RTCP_WORDS,
        seeds_reach: "ok",
    },
    Target {
        name: "fmp4",
        about: "fMP4 segments read back from the bucket (transcode's box walk)",
        setup: || Box::new(media::run),
        seeds: media::seeds,
        dict: media::WORDS,
        seeds_reach: "ok",
    },
    Target {
        name: "bundle",
        about: "evidence bundles (tar, manifest, signature) checked offline: a partner's bundle is untrusted",
        setup: || Box::new(bundle::BundleHarness::default()),
        seeds: bundle::seeds,
        dict: bundle::WORDS,
        seeds_reach: "ok: intact",
    },
    Target {
        name: "bearer",
        about: "the authorization header: bearer JWTs (header, claims, roles, times)",
        setup: || Box::new(identity::AuthHarness::new(false)),
        seeds: identity::bearer_seeds,
        dict: identity::BEARER_WORDS,
        seeds_reach: "",
    },
    Target {
        name: "certificate",
        about: "a client certificate's names (SPIFFE URI, subject) after the TLS handshake",
        setup: || Box::new(identity::AuthHarness::new(true)),
        seeds: identity::certificate_seeds,
        dict: identity::CERTIFICATE_WORDS,
        seeds_reach: "",
    },
    Target {
        name: "config",
        about: "configuration files (YAML) of every service, the operator and partners, validated",
        setup: || Box::new(config::run),
        seeds: config::seeds,
        dict: config::WORDS,
        seeds_reach: "",
    },
    Target {
        name: "resources",
        about: "Site, Camera and AlertRule resources through the operator's render path",
        setup: || Box::new(resources::run),
        seeds: resources::seeds,
        dict: resources::WORDS,
        seeds_reach: "ok",
    },
    Target {
        name: "http",
        about: "storage's HTTP media grants, download tokens and Range headers",
        setup: || Box::new(http::HttpHarness::default()),
        seeds: http::seeds,
        dict: http::WORDS,
        seeds_reach: "",
    },
];

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
