//! `kordon evidence`: export cameras over a time range as a signed evidence bundle, download
//! it, and check bundles offline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use futures::StreamExt;
use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_runtime::client;
use kordon_storage::evidence::{self, BundleReport, TrustedKey, Verdict};
use sha2::{Digest, Sha256};

use crate::client::{ClientFlags, Output, bar, status_error};
use crate::footage::{TimeWindow, camera_ref, http_client};

#[derive(Debug, clap::Subcommand)]
pub enum EvidenceCommand {
    /// Export cameras over a time range as a signed bundle, download it and verify it.
    Export(ExportArgs),
    /// Download a bundle exported earlier (by its id) and verify it.
    Get(GetArgs),
    /// Check a bundle offline: signature, every file's SHA-256, every chain link.
    /// Exits 0 when intact and signed by a trusted key, 1 naming every problem, and 3 when
    /// nothing is wrong but the signer is unknown (no --public-key or --trusted-keys given, so
    /// anyone could have made it).
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// A camera, as SITE/CAMERA; repeat for several (all of one site).
    #[arg(long = "camera", required = true)]
    pub cameras: Vec<String>,
    #[command(flatten)]
    pub window: TimeWindow,
    /// The case or file number the evidence is for (required; in the manifest and the log).
    #[arg(long)]
    pub case: String,
    /// Why you export this footage (required; in the manifest and the access log).
    #[arg(long)]
    pub reason: String,
    /// Who receives the bundle (e.g. a prosecutor's office).
    #[arg(long, default_value = "")]
    pub recipient: String,
    /// Free text for the manifest.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Idempotency key: a retry with the same key returns the bundle made first.
    /// Default: a new key per run.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Where to write the bundle (default `evidence-<bundle id>.tar`).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub rendering: RenderingArgs,
}

/// Viewer copies beside the originals (any of these flags asks for them): one MP4 per camera,
/// made by the transcode service, listed and hashed in the manifest, and not evidence.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RenderingArgs {
    /// Add viewer copies with the wall-clock time burned into every frame.
    #[arg(long)]
    pub burn_in_time: bool,
    /// IANA time zone of the burned-in time, e.g. Europe/Sofia (default: the site's).
    #[arg(long, value_name = "ZONE", requires = "burn_in_time")]
    pub time_zone: Option<String>,
    /// Blur an area in a camera's viewer copy: `CAMERA:x1,y1;x2,y2;x3,y3[;...]`, a polygon in
    /// normalised coordinates (0..1, 0,0 top left). CAMERA is one of --camera, as SITE/CAMERA
    /// or CAMERA. Repeat for more masks or cameras.
    #[arg(long = "mask", value_name = "CAMERA:POLYGON")]
    pub masks: Vec<String>,
    /// Blur every detected person in the viewer copies.
    #[arg(long)]
    pub blur_people: bool,
}

impl RenderingArgs {
    /// The rendering these flags ask for over `cameras` (`None`: originals only).
    pub fn rendering(
        &self,
        cameras: &[common::CameraRef],
    ) -> anyhow::Result<Option<spb::ExportRendering>> {
        if !self.burn_in_time && self.masks.is_empty() && !self.blur_people {
            return Ok(None);
        }
        let mut by_camera: Vec<spb::CameraPrivacyMasks> = Vec::new();
        for m in &self.masks {
            let (camera, polygon) = parse_mask(m, cameras)?;
            match by_camera
                .iter_mut()
                .find(|c| c.camera.as_ref() == Some(&camera))
            {
                Some(c) => c.masks.push(polygon),
                None => by_camera.push(spb::CameraPrivacyMasks {
                    camera: Some(camera),
                    masks: vec![polygon],
                }),
            }
        }
        Ok(Some(spb::ExportRendering {
            burn_in_timestamp: self.burn_in_time,
            time_zone: self.time_zone.clone().unwrap_or_default(),
            privacy_masks: by_camera,
            blur_people: self.blur_people,
        }))
    }
}

/// One `--mask CAMERA:x1,y1;x2,y2;...`: the camera (one of `cameras`) and the polygon.
fn parse_mask(
    arg: &str,
    cameras: &[common::CameraRef],
) -> anyhow::Result<(common::CameraRef, common::Polygon)> {
    let (camera, points) = arg
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--mask must be CAMERA:x1,y1;x2,y2;x3,y3, got `{arg}`"))?;
    let matching: Vec<&common::CameraRef> = cameras
        .iter()
        .filter(|c| format!("{}/{}", c.site, c.camera) == camera || (c.camera == camera))
        .collect();
    let [camera_ref] = matching.as_slice() else {
        anyhow::bail!("--mask `{arg}`: `{camera}` is not one of the --camera values");
    };
    let polygon = parse_polygon(arg, points)?;
    Ok(((*camera_ref).clone(), polygon))
}

/// `x1,y1;x2,y2;x3,y3...` (normalised) as a polygon; errors quote `arg`.
pub(crate) fn parse_polygon(arg: &str, points: &str) -> anyhow::Result<common::Polygon> {
    let points = points
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (x, y) = p
                .split_once(',')
                .ok_or_else(|| anyhow::anyhow!("--mask `{arg}`: `{p}` is not a point x,y"))?;
            let coord = |v: &str| {
                v.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| {
                        anyhow::anyhow!("--mask `{arg}`: `{v}` is not a coordinate between 0 and 1")
                    })
            };
            Ok(common::Point {
                x: coord(x)?,
                y: coord(y)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if points.len() < 3 {
        anyhow::bail!("--mask `{arg}`: a polygon needs at least 3 points");
    }
    Ok(common::Polygon { points })
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The bundle id (from `kordon evidence export`).
    pub bundle: String,
    /// Why you read the bundle (required; logged).
    #[arg(long)]
    pub reason: String,
    #[arg(long, default_value = "")]
    pub case: String,
    #[arg(long, default_value = "")]
    pub recipient: String,
    /// Where to write the bundle (default `evidence-<bundle id>.tar`).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle (.tar) to check.
    pub bundle: PathBuf,
    /// The site's Ed25519 public key, 64 hex digits (`kordon evidence export` prints it);
    /// repeat for several. Without it (or --trusted-keys) the signer is unknown: the result
    /// is "unknown signer", exit 3, never "intact".
    #[arg(long, value_name = "HEX")]
    pub public_key: Vec<String>,
    /// A file of trusted site keys (partner sites included): one a line, 64 hex digits then
    /// the site's name; `#` starts a comment.
    #[arg(long, value_name = "FILE", env = "KORDON_TRUSTED_KEYS")]
    pub trusted_keys: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, env = "KORDON_OUTPUT", default_value_t = Output::Table)]
    pub output: Output,
}

pub async fn run(cmd: EvidenceCommand) -> anyhow::Result<()> {
    match cmd {
        EvidenceCommand::Export(a) => export(a).await,
        EvidenceCommand::Get(a) => get(a).await,
        EvidenceCommand::Verify(a) => verify(a).await,
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    if args.case.trim().is_empty() || args.reason.trim().is_empty() {
        anyhow::bail!("--case and --reason are required: both go into the manifest and the log");
    }
    let cameras = args
        .cameras
        .iter()
        .map(|c| camera_ref(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rendering = args.rendering.rendering(&cameras)?;
    let (from, to) = args.window.resolve()?;
    let to = to.unwrap_or_else(SystemTime::now);
    let audit = common::AuditContext {
        reason: args.reason.clone(),
        case_id: args.case.clone(),
        recipient: args.recipient.clone(),
    };
    let request_id = args
        .request_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let channel = client::connect(&args.client.options()).await?;
    let mut storage = StorageServiceClient::new(channel);
    let mut stream = storage
        .export_evidence(spb::ExportEvidenceRequest {
            cameras,
            range: Some(common::TimeRange {
                start: Some(kordon_proto::time::timestamp_from_system_time(from)),
                end: Some(kordon_proto::time::timestamp_from_system_time(to)),
            }),
            audit: Some(audit.clone()),
            rendering,
            description: args.description.clone(),
            request_id: request_id.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut progress: Option<indicatif::ProgressBar> = None;
    let mut bundle = None;
    let mut bundle_id = String::new();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|s| {
            if let Some(p) = &progress {
                p.abandon();
            }
            status_error(s)
        })?;
        bundle_id = msg.bundle_id.clone();
        match msg.event {
            Some(spb::export_evidence_response::Event::Progress(p)) if p.total_units > 0 => {
                let pb = progress.get_or_insert_with(|| {
                    eprintln!("exporting bundle {bundle_id}");
                    bar(p.total_units, &p.stage)
                });
                pb.set_position(p.done_units);
            }
            Some(spb::export_evidence_response::Event::Bundle(b)) => bundle = Some(b),
            _ => {}
        }
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let bundle = bundle.ok_or_else(|| {
        anyhow::anyhow!(
            "the export stream of bundle {bundle_id} ended without a result; `kordon evidence \
             get {bundle_id}` shows its state"
        )
    })?;
    eprintln!(
        "bundle {} ready: {} segments, {} gaps{}, {}",
        bundle.id,
        bundle.segment_count,
        bundle.gap_count,
        if bundle.includes_rendering {
            ", viewer copies"
        } else {
            ""
        },
        indicatif::HumanBytes(bundle.size_bytes)
    );
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("evidence-{}.tar", bundle.id)));
    download_and_verify(&mut storage, &args.client, &bundle.id, &audit, &file).await
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why you read this bundle (it is logged)");
    }
    let audit = common::AuditContext {
        reason: args.reason.clone(),
        case_id: args.case.clone(),
        recipient: args.recipient.clone(),
    };
    let channel = client::connect(&args.client.options()).await?;
    let mut storage = StorageServiceClient::new(channel);
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("evidence-{}.tar", args.bundle)));
    download_and_verify(&mut storage, &args.client, &args.bundle, &audit, &file).await
}

async fn download_and_verify(
    storage: &mut StorageServiceClient<client::AuthedChannel>,
    flags: &ClientFlags,
    id: &str,
    audit: &common::AuditContext,
    file: &Path,
) -> anyhow::Result<()> {
    let got = storage
        .get_evidence_bundle(spb::GetEvidenceBundleRequest {
            bundle_id: id.to_string(),
            audit: Some(audit.clone()),
            url_ttl: None,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let bundle = got.bundle.unwrap_or_default();
    match spb::EvidenceBundleState::try_from(bundle.state) {
        Ok(spb::EvidenceBundleState::Ready) => {}
        Ok(spb::EvidenceBundleState::Building) => {
            anyhow::bail!("bundle {id} is still being built; try again shortly")
        }
        _ => anyhow::bail!("bundle {id} failed: {}", bundle.error),
    }
    let url = got
        .download
        .ok_or_else(|| anyhow::anyhow!("the server sent no download URL"))?
        .url;
    let part = file.with_extension("tar.part");
    let http = http_client(flags)?;
    let mut resp = http
        .get(&url)
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("downloading bundle {id}"))?;
    if !resp.status().is_success() {
        anyhow::bail!(
            "downloading bundle {id}: HTTP {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default().trim()
        );
    }
    let mut out = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let mut hash = Sha256::new();
    let pb = bar(bundle.size_bytes, "downloading");
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("downloading bundle {id}"))?
    {
        out.write_all(&chunk)
            .with_context(|| format!("writing {}", part.display()))?;
        hash.update(&chunk);
        pb.inc(chunk.len() as u64);
    }
    out.sync_all()
        .with_context(|| format!("writing {}", part.display()))?;
    pb.finish_and_clear();
    let sha: [u8; 32] = hash.finalize().into();
    if sha[..] != bundle.sha256[..] {
        anyhow::bail!(
            "the download of bundle {id} is damaged: SHA-256 {}, the server says {}; {} kept for \
             inspection",
            hex::encode(sha),
            hex::encode(&bundle.sha256),
            part.display()
        );
    }
    std::fs::rename(&part, file).with_context(|| format!("cannot write {}", file.display()))?;
    let key: [u8; 32] = bundle
        .signing_public_key
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the server sent no signing key"))?;
    let trusted = vec![TrustedKey {
        key,
        label: "the site key the server names".to_string(),
    }];
    let report = verify_file(file, trusted).await?;
    println!("{}", file.display());
    eprintln!(
        "wrote {} ({}, SHA-256 {})\nsite signing key {}\n{}",
        file.display(),
        indicatif::HumanBytes(bundle.size_bytes),
        hex::encode(&bundle.sha256),
        hex::encode(key),
        if report.intact() {
            "verified: signature, files and chain intact".to_string()
        } else {
            format!("NOT INTACT:\n  {}", report.problems.join("\n  "))
        }
    );
    for v in &report.viewer_copies {
        eprintln!(
            "viewer copy (not evidence) {}: {}",
            v.file, v.transformation
        );
    }
    if !report.intact() {
        anyhow::bail!("bundle {id} did not verify after download");
    }
    Ok(())
}

/// Exit status 3 of `kordon evidence verify`: nothing is wrong with the bundle, but no
/// trusted key signed it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownSigner(pub String);

pub(crate) async fn verify_file(
    path: &Path,
    trusted: Vec<TrustedKey>,
) -> anyhow::Result<BundleReport> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let pb = bar(size, "verifying");
        let report = evidence::verify_bundle(std::io::BufReader::new(file), &trusted, &mut |n| {
            pb.set_position(n)
        })
        .with_context(|| format!("reading {}", path.display()));
        pb.finish_and_clear();
        report
    })
    .await?
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mut trusted = Vec::new();
    for k in &args.public_key {
        let key = hex::decode(k.trim())
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .ok_or_else(|| anyhow::anyhow!("--public-key must be 64 hex digits"))?;
        trusted.push(TrustedKey {
            key,
            label: hex::encode(key),
        });
    }
    if let Some(path) = &args.trusted_keys {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --trusted-keys {}", path.display()))?;
        trusted.extend(
            TrustedKey::parse_file(&text)
                .map_err(|e| anyhow::anyhow!("--trusted-keys {}: {e}", path.display()))?,
        );
    }
    let report = verify_file(&args.bundle, trusted).await?;
    let verdict = report.verdict();
    match args.output {
        Output::Json => {
            let mut v = serde_json::to_value(&report)?;
            v["verdict"] = serde_json::to_value(verdict)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            println!("BUNDLE     {}", report.bundle_id);
            println!("SITE       {}", report.site);
            println!("CASE       {}", report.case_id);
            println!("EXPORTED   {} by {}", report.created_at, report.exported_by);
            println!("RANGE      {} – {}", report.range_from, report.range_to);
            println!(
                "CONTENT    {} camera(s), {} segment(s), {} gap(s), {} checked",
                report.cameras,
                report.segments_checked,
                report.gaps,
                indicatif::HumanBytes(report.bytes_checked)
            );
            println!(
                "SIGNATURE  {} (key {}{})",
                if report.signature_valid {
                    "valid"
                } else {
                    "INVALID"
                },
                report.signing_key,
                match (&report.signer, report.key_pinned) {
                    (Some(who), _) => format!(", trusted: {who}"),
                    (None, true) => ", NOT TRUSTED".to_string(),
                    (None, false) => ", UNKNOWN SIGNER: no trusted key given".to_string(),
                }
            );
            for v in &report.viewer_copies {
                println!(
                    "VIEWER     {} ({}, {}): {} — {}",
                    v.file,
                    v.camera,
                    indicatif::HumanBytes(v.size_bytes),
                    v.transformation,
                    if v.intact { "intact" } else { "NOT INTACT" }
                );
            }
            for n in &report.notes {
                println!("NOTE       {n}");
            }
            if verdict == Verdict::Intact {
                println!("RESULT     intact");
            } else if verdict == Verdict::UnknownSigner {
                println!(
                    "RESULT     UNKNOWN SIGNER — unaltered since signing, but by a key nobody \
                     vouched for; pass --public-key or --trusted-keys"
                );
            } else {
                println!(
                    "RESULT     NOT INTACT — {} problem(s):",
                    report.problems.len()
                );
                for p in &report.problems {
                    println!("  - {p}");
                }
            }
        }
    }
    match verdict {
        Verdict::Intact => Ok(()),
        Verdict::UnknownSigner => Err(UnknownSigner(format!(
            "{}: the signer is unknown (no trusted key given); it proves nothing about who \
             made it",
            args.bundle.display()
        ))
        .into()),
        Verdict::NotIntact => anyhow::bail!(
            "{} is not intact: {} problem(s)",
            args.bundle.display(),
            report.problems.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cams() -> Vec<common::CameraRef> {
        ["burgas/gate-3", "burgas/pier-1"]
            .iter()
            .map(|c| crate::footage::camera_ref(c).unwrap())
            .collect()
    }

    #[test]
    fn rendering_flags() {
        assert_eq!(RenderingArgs::default().rendering(&cams()).unwrap(), None);
        let args = RenderingArgs {
            burn_in_time: true,
            time_zone: Some("Europe/Sofia".into()),
            masks: vec![
                "gate-3:0,0;0.5,0;0.5,0.5".into(),
                "burgas/gate-3:0.1,0.1;0.2,0.1;0.2,0.2;0.1,0.2".into(),
                "pier-1:0,0;1,0;1,1".into(),
            ],
            blur_people: true,
        };
        let r = args.rendering(&cams()).unwrap().unwrap();
        assert!(r.burn_in_timestamp && r.blur_people);
        assert_eq!(r.time_zone, "Europe/Sofia");
        assert_eq!(r.privacy_masks.len(), 2);
        assert_eq!(r.privacy_masks[0].camera.as_ref().unwrap().camera, "gate-3");
        assert_eq!(r.privacy_masks[0].masks.len(), 2);
        assert_eq!(r.privacy_masks[0].masks[1].points.len(), 4);
        assert_eq!(r.privacy_masks[1].masks[0].points[1].x, 1.0);
        // Blurring alone asks for viewer copies too.
        let blur = RenderingArgs {
            blur_people: true,
            ..Default::default()
        };
        assert!(blur.rendering(&cams()).unwrap().is_some());
    }

    #[test]
    fn bad_masks_are_named() {
        let err = |m: &str| parse_mask(m, &cams()).unwrap_err().to_string();
        assert!(err("gate-3").contains("must be CAMERA:"));
        assert!(err("gate-9:0,0;1,0;1,1").contains("not one of the --camera values"));
        assert!(err("gate-3:0,0;1,0").contains("at least 3 points"));
        assert!(err("gate-3:0,0;1.5,0;1,1").contains("`1.5` is not a coordinate"));
        assert!(err("gate-3:0,0;1;1,1").contains("`1` is not a point"));
    }
}
