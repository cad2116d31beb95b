//! Command-line arguments and the validated configuration built from them.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    time::Duration,
};

use serde::Serialize;

use crate::CamsimError;

/// Cameras served when `--cameras` is not given.
pub const DEFAULT_CAMERAS: usize = 4;
/// Most cameras one simulator serves (a sanity bound, not a performance limit).
pub const MAX_CAMERAS: usize = 10_000;
/// RTSP listen address when `--listen` is not given.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8554));
/// HTTP control listen address when `--control-listen` is not given.
pub const DEFAULT_CONTROL_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8555));

/// Frames per second of every stream.
pub(crate) const FPS: u32 = 25;
/// Duration of one frame in nanoseconds (40 ms at 25 fps).
pub(crate) const FRAME_NS: u64 = 1_000_000_000 / FPS as u64;
/// Frames between keyframes (2 s).
pub(crate) const GOP_FRAMES: u32 = 50;
/// Most B-frames between reference frames camsim encodes.
pub const MAX_BFRAMES: u32 = 3;
/// Length of the test-pattern loop in frames (10 s, like the vendored clip).
pub(crate) const PATTERN_FRAMES: u32 = 250;
/// Shared pipelines per stream kind for the clip source, each at another point of the loop;
/// camera `i` is on phase `(i - 1) % CLIP_PHASES`. More phases spread keyframes out in time
/// across cameras; each costs one pipeline while it has clients.
pub(crate) const CLIP_PHASES: usize = 5;

/// Video codec of every stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the cameras show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The street clip, looped.
    Clip,
    /// SMPTE bars with the camera name and a running clock burnt in.
    Pattern,
}

/// The two streams of every camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// 1920x1080, ~4 Mbit/s.
    Main,
    /// 640x360, ~512 kbit/s.
    Sub,
}

impl StreamKind {
    pub const ALL: [StreamKind; 2] = [StreamKind::Main, StreamKind::Sub];

    /// Last path segment of the stream's URL.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Main => "main",
            StreamKind::Sub => "sub",
        }
    }

    /// Width and height in pixels.
    pub fn dimensions(self) -> (u32, u32) {
        match self {
            StreamKind::Main => (1920, 1080),
            StreamKind::Sub => (640, 360),
        }
    }

    /// Target bitrate in kbit/s.
    pub fn bitrate_kbps(self) -> u32 {
        match self {
            StreamKind::Main => 4000,
            StreamKind::Sub => 512,
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kordon camsim` command-line arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CamsimArgs {
    /// Number of simulated cameras, served as cam1 .. camN.
    #[arg(long, env = "KORDON_CAMSIM_CAMERAS", default_value_t = DEFAULT_CAMERAS)]
    pub cameras: usize,

    /// RTSP listen address.
    #[arg(long, env = "KORDON_CAMSIM_LISTEN", default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// HTTP control endpoint listen address (GET /cameras, POST /cameras/{i}/stop|start|stall).
    #[arg(long, env = "KORDON_CAMSIM_CONTROL_LISTEN", default_value_t = DEFAULT_CONTROL_LISTEN)]
    pub control_listen: SocketAddr,

    /// Video codec of all streams.
    #[arg(long, env = "KORDON_CAMSIM_CODEC", value_enum, default_value_t = Codec::H264)]
    pub codec: Codec,

    /// What the cameras show.
    #[arg(long, env = "KORDON_CAMSIM_SOURCE", value_enum, default_value_t = Source::Clip)]
    pub source: Source,

    /// Clip to loop instead of the street clip built into the binary (any format GStreamer
    /// decodes).
    #[arg(long, env = "KORDON_CAMSIM_CLIP")]
    pub clip: Option<PathBuf>,

    /// Directory for the encode-once cache [default: $XDG_CACHE_HOME/kordon/camsim, else
    /// ~/.cache/kordon/camsim].
    #[arg(long, env = "KORDON_CAMSIM_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// B-frames between reference frames (0 to MAX_BFRAMES), like many real cameras' "main"
    /// or "high" profile; decode order then differs from presentation order.
    #[arg(long, env = "KORDON_CAMSIM_BFRAMES", default_value_t = 0)]
    pub bframes: u32,

    /// Refuse RTP over TCP (SETUP answers 461 Unsupported Transport), like cameras that only
    /// stream over UDP.
    #[arg(long, env = "KORDON_CAMSIM_REFUSE_TCP")]
    pub refuse_tcp: bool,
}

/// Where the clip comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipSource {
    /// The street clip built into the binary (`assets/footage/bikes.mp4`).
    Embedded,
    /// A clip file.
    File(PathBuf),
}

/// Validated simulator configuration.
#[derive(Debug, Clone)]
pub struct CamsimConfig {
    /// Number of cameras, `1..=MAX_CAMERAS`.
    pub cameras: usize,
    /// RTSP listen address; port 0 picks a free port (see [`crate::CamsimHandle::rtsp_addr`]).
    pub listen: SocketAddr,
    /// HTTP control listen address; `None` serves no HTTP (the handle still has the controls).
    pub control_listen: Option<SocketAddr>,
    pub codec: Codec,
    pub source: Source,
    pub clip: ClipSource,
    /// Encode-once cache directory; created when missing.
    pub cache_dir: PathBuf,
    /// B-frames between reference frames, `0..=MAX_BFRAMES`.
    pub bframes: u32,
    /// Answer a SETUP for RTP over TCP with 461 Unsupported Transport.
    pub refuse_tcp: bool,
}

impl Default for CamsimConfig {
    fn default() -> Self {
        Self {
            cameras: DEFAULT_CAMERAS,
            listen: DEFAULT_LISTEN,
            control_listen: Some(DEFAULT_CONTROL_LISTEN),
            codec: Codec::H264,
            source: Source::Clip,
            clip: ClipSource::Embedded,
            cache_dir: default_cache_dir(),
            bframes: 0,
            refuse_tcp: false,
        }
    }
}

impl CamsimConfig {
    /// Checks ranges and that the clip exists; the error names the command-line option.
    pub fn validate(&self) -> Result<(), CamsimError> {
        if self.cameras == 0 || self.cameras > MAX_CAMERAS {
            return Err(CamsimError::InvalidConfig {
                key: "--cameras",
                message: format!("{} is not between 1 and {MAX_CAMERAS}", self.cameras),
            });
        }
        if let ClipSource::File(path) = &self.clip
            && self.source == Source::Clip
            && !path.is_file()
        {
            return Err(CamsimError::InvalidConfig {
                key: "--clip",
                message: format!("{} is not a readable file", path.display()),
            });
        }
        if self.bframes > MAX_BFRAMES {
            return Err(CamsimError::InvalidConfig {
                key: "--bframes",
                message: format!("{} is not between 0 and {MAX_BFRAMES}", self.bframes),
            });
        }
        if self.cache_dir.as_os_str().is_empty() {
            return Err(CamsimError::InvalidConfig {
                key: "--cache-dir",
                message: "must not be empty".into(),
            });
        }
        Ok(())
    }
}

impl TryFrom<CamsimArgs> for CamsimConfig {
    type Error = CamsimError;

    fn try_from(args: CamsimArgs) -> Result<Self, Self::Error> {
        let config = CamsimConfig {
            cameras: args.cameras,
            listen: args.listen,
            control_listen: Some(args.control_listen),
            codec: args.codec,
            source: args.source,
            clip: args.clip.map_or(ClipSource::Embedded, ClipSource::File),
            cache_dir: args.cache_dir.unwrap_or_else(default_cache_dir),
            bframes: args.bframes,
            refuse_tcp: args.refuse_tcp,
        };
        config.validate()?;
        Ok(config)
    }
}

/// `$XDG_CACHE_HOME/kordon/camsim`, else `$HOME/.cache/kordon/camsim`, else a directory under
/// the system temporary directory.
pub fn default_cache_dir() -> PathBuf {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let base = absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kordon").join("camsim")
}

/// Clamp for stall durations given over HTTP: long enough for any test, short enough that a typo
/// does not wedge a camera for days.
pub(crate) const MAX_STALL: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CamsimArgs,
    }

    #[test]
    fn defaults_match_the_documented_constants() {
        let cli = Cli::try_parse_from(["camsim"]).expect("defaults parse");
        assert_eq!(cli.args.cameras, DEFAULT_CAMERAS);
        assert_eq!(cli.args.listen, DEFAULT_LISTEN);
        assert_eq!(cli.args.control_listen, DEFAULT_CONTROL_LISTEN);
        assert_eq!(cli.args.codec, Codec::H264);
        assert_eq!(cli.args.source, Source::Clip);
        let config = CamsimConfig::try_from(cli.args).expect("defaults are valid");
        assert_eq!(config.clip, ClipSource::Embedded);
        assert!(config.cache_dir.ends_with("kordon/camsim"));
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "camsim",
            "--cameras",
            "250",
            "--listen",
            "0.0.0.0:18554",
            "--control-listen",
            "127.0.0.1:0",
            "--codec",
            "h265",
            "--source",
            "pattern",
            "--cache-dir",
            "/tmp/x",
        ])
        .expect("flags parse");
        let config = CamsimConfig::try_from(cli.args).expect("valid");
        assert_eq!(config.cameras, 250);
        assert_eq!(config.listen.port(), 18554);
        assert_eq!(config.codec, Codec::H265);
        assert_eq!(config.source, Source::Pattern);
        assert_eq!(config.cache_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn bad_values_name_the_option() {
        let cli = Cli::try_parse_from(["camsim", "--cameras", "0"]).expect("parses");
        let err = CamsimConfig::try_from(cli.args).expect_err("zero cameras is invalid");
        assert!(err.to_string().contains("--cameras"), "{err}");

        let cli =
            Cli::try_parse_from(["camsim", "--clip", "/nonexistent/clip.mp4"]).expect("parses");
        let err = CamsimConfig::try_from(cli.args).expect_err("missing clip is invalid");
        assert!(err.to_string().contains("--clip"), "{err}");

        assert!(Cli::try_parse_from(["camsim", "--codec", "mjpeg"]).is_err());
    }
}
