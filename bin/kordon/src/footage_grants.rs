//! `kordon footage request|grants|approve|refuse|fetch`: footage grants with partner sites.
//! Every command talks to this site's storage; it relays to the partner over the partner link.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use sha2::{Digest, Sha256};

use kordon_proto::common::v1 as common;
use kordon_proto::storage::v1 as spb;
use kordon_proto::storage::v1::storage_service_client::StorageServiceClient;
use kordon_proto::time::timestamp_from_system_time as ts;
use kordon_runtime::client;

use super::{ApproveArgs, FetchArgs, GrantState, GrantsArgs, RefuseArgs, RequestArgs};
use crate::client::{Output, bar, rfc3339, status_error};

fn required(value: &str, flag: &str, why: &str) -> anyhow::Result<()> {
    if value.trim().is_empty() {
        anyhow::bail!("{flag} is required: {why}");
    }
    Ok(())
}

fn state_name(s: i32) -> &'static str {
    match spb::FootageGrantState::try_from(s) {
        Ok(spb::FootageGrantState::Pending) => "pending",
        Ok(spb::FootageGrantState::Approved) => "approved",
        Ok(spb::FootageGrantState::Denied) => "denied",
        Ok(spb::FootageGrantState::Expired) => "expired",
        _ => "unknown",
    }
}

fn grant_json(g: &spb::FootageGrant) -> serde_json::Value {
    let range = g.range.unwrap_or_default();
    let asked = g.requested_range.unwrap_or_default();
    let audit = g.audit.clone().unwrap_or_default();
    serde_json::json!({
        "id": g.id,
        "owner_site": g.owner_site,
        "requesting_site": g.requesting_site,
        "requested_by": g.requested_by,
        "cameras": g.cameras.iter().map(|c| format!("{}/{}", c.site, c.camera)).collect::<Vec<_>>(),
        "from": rfc3339(&range.start),
        "to": rfc3339(&range.end),
        "requested_from": rfc3339(&asked.start),
        "requested_to": rfc3339(&asked.end),
        "state": state_name(g.state),
        "case": audit.case_id,
        "reason": audit.reason,
        "legal_basis": g.legal_basis,
        "created_at": rfc3339(&g.created_at),
        "decided_by": g.decided_by,
        "decided_at": rfc3339(&g.decided_at),
        "decision_reason": g.decision_reason,
        "access_until": rfc3339(&g.access_until),
        "form": g.form,
        "keep_for_seconds": g.keep_for.map(|d| d.seconds),
        "bundle_id": g.bundle_id,
        "bundle_sha256": g.bundle_sha256,
        "bundle_size": g.bundle_size,
    })
}

fn print_grant(g: &spb::FootageGrant, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&grant_json(g))?),
        Output::Table => {
            let v = grant_json(g);
            for (k, v) in v.as_object().into_iter().flatten() {
                let text = match v {
                    serde_json::Value::String(s) if s.is_empty() => continue,
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                println!("{:<16} {text}", k.to_uppercase());
            }
        }
    }
    Ok(())
}

async fn storage(
    flags: &crate::client::ClientFlags,
) -> anyhow::Result<StorageServiceClient<client::AuthedChannel>> {
    Ok(StorageServiceClient::new(
        client::connect(&flags.options()).await?,
    ))
}

/// `kordon footage request`.
pub async fn request(args: RequestArgs) -> anyhow::Result<()> {
    required(
        &args.reason,
        "--reason",
        "say why you need the footage (logged at both sites)",
    )?;
    required(&args.case, "--case", "a footage request is for a case")?;
    required(
        &args.legal_basis,
        "--legal-basis",
        "name the law or agreement article",
    )?;
    if args.to <= args.from {
        anyhow::bail!("--to must be after --from");
    }
    let mut cameras = Vec::new();
    for c in &args.cameras {
        let name = match c.split_once('/') {
            Some((site, cam)) if site == args.partner => cam,
            Some((site, _)) => anyhow::bail!(
                "--camera {c}: a request names cameras of --partner {} only, not of {site}",
                args.partner
            ),
            None => c.as_str(),
        };
        cameras.push(common::CameraRef {
            site: args.partner.clone(),
            camera: name.to_string(),
        });
    }
    let grant = storage(&args.client)
        .await?
        .request_footage(spb::RequestFootageRequest {
            cameras,
            range: Some(common::TimeRange {
                start: Some(ts(args.from)),
                end: Some(ts(args.to)),
            }),
            audit: Some(common::AuditContext {
                reason: args.reason.clone(),
                case_id: args.case.clone(),
                recipient: String::new(),
            }),
            request_id: args.request_id.clone(),
            legal_basis: args.legal_basis.clone(),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .grant
        .ok_or_else(|| anyhow::anyhow!("the server sent no grant"))?;
    print_grant(&grant, args.client.output)?;
    if args.client.output == Output::Table {
        eprintln!(
            "requested: grant {} is {} at {}; `kordon footage grants --partner {}` shows its \
             state, `kordon footage fetch {} --partner {}` downloads it once approved",
            grant.id,
            state_name(grant.state),
            grant.owner_site,
            grant.owner_site,
            grant.id,
            grant.owner_site
        );
    }
    Ok(())
}

/// `kordon footage grants`.
pub async fn list(args: GrantsArgs) -> anyhow::Result<()> {
    let states = match args.state {
        None => Vec::new(),
        Some(s) => vec![match s {
            GrantState::Pending => spb::FootageGrantState::Pending,
            GrantState::Approved => spb::FootageGrantState::Approved,
            GrantState::Denied => spb::FootageGrantState::Denied,
            GrantState::Expired => spb::FootageGrantState::Expired,
        } as i32],
    };
    let mut client = storage(&args.client).await?;
    let mut grants = Vec::new();
    let mut token = String::new();
    loop {
        let resp = client
            .list_footage_grants(spb::ListFootageGrantsRequest {
                requesting_site: String::new(),
                states: states.clone(),
                page: Some(common::PageRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                }),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        grants.extend(resp.grants);
        token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    // --partner: grants with that partner, whichever way they go.
    if let Some(p) = &args.partner {
        grants.retain(|g| &g.owner_site == p || &g.requesting_site == p);
    }
    match args.client.output {
        Output::Json => {
            let out: Vec<_> = grants.iter().map(grant_json).collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table => {
            println!(
                "{:<36} {:<9} {:<9} {:<9} {:<25} {:<25} {:<16} CAMERAS",
                "ID", "OWNER", "ASKED BY", "STATE", "FROM", "TO", "CASE"
            );
            for g in &grants {
                let r = g.range.unwrap_or_default();
                println!(
                    "{:<36} {:<9} {:<9} {:<9} {:<25} {:<25} {:<16} {}",
                    g.id,
                    g.owner_site,
                    g.requesting_site,
                    state_name(g.state),
                    rfc3339(&r.start),
                    rfc3339(&r.end),
                    g.audit.as_ref().map(|a| a.case_id.as_str()).unwrap_or(""),
                    g.cameras
                        .iter()
                        .map(|c| c.camera.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
    }
    Ok(())
}

async fn decide(
    flags: &crate::client::ClientFlags,
    req: spb::DecideFootageGrantRequest,
) -> anyhow::Result<spb::FootageGrant> {
    storage(flags)
        .await?
        .decide_footage_grant(req)
        .await
        .map_err(status_error)?
        .into_inner()
        .grant
        .ok_or_else(|| anyhow::anyhow!("the server sent no grant"))
}

/// `kordon footage approve`.
pub async fn approve(args: ApproveArgs) -> anyhow::Result<()> {
    required(&args.reason, "--reason", "say why it is approved (logged)")?;
    let range = match (args.from, args.to) {
        (Some(f), Some(t)) if t > f => Some(common::TimeRange {
            start: Some(ts(f)),
            end: Some(ts(t)),
        }),
        (Some(_), Some(_)) => anyhow::bail!("--to must be after --from"),
        _ => None,
    };
    eprintln!(
        "approving {}: building the signed evidence bundle…",
        args.grant
    );
    let g = decide(
        &args.client,
        spb::DecideFootageGrantRequest {
            grant_id: args.grant.clone(),
            decision: spb::FootageDecision::Approve as i32,
            access_for: args.access_for.map(|d| prost_types::Duration {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            }),
            audit: Some(common::AuditContext {
                reason: args.reason.clone(),
                ..Default::default()
            }),
            range,
        },
    )
    .await?;
    print_grant(&g, args.client.output)
}

/// `kordon footage refuse`.
pub async fn refuse(args: RefuseArgs) -> anyhow::Result<()> {
    required(&args.reason, "--reason", "the partner is told why")?;
    let g = decide(
        &args.client,
        spb::DecideFootageGrantRequest {
            grant_id: args.grant.clone(),
            decision: spb::FootageDecision::Deny as i32,
            audit: Some(common::AuditContext {
                reason: args.reason.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await?;
    print_grant(&g, args.client.output)
}

/// `kordon footage fetch`: streams the bundle into `FILE.part`, checks its SHA-256 against
/// the grant, checks it again offline (signature, files, chain), then renames it.
pub async fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    required(
        &args.reason,
        "--reason",
        "say why you fetch it (logged at both sites)",
    )?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.tar", args.grant)));
    let mut stream = storage(&args.client)
        .await?
        .fetch_footage_grant(spb::FetchFootageGrantRequest {
            grant_id: args.grant.clone(),
            owner_site: args.partner.clone(),
            audit: Some(common::AuditContext {
                reason: args.reason.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let grant = match stream.message().await.map_err(status_error)? {
        Some(spb::FetchFootageGrantResponse {
            part: Some(spb::fetch_footage_grant_response::Part::Grant(g)),
        }) => g,
        _ => anyhow::bail!("the server did not start the download with the grant"),
    };
    let part = out.with_extension("tar.part");
    let mut file = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let pb = bar(grant.bundle_size, "downloading");
    let mut hash = Sha256::new();
    while let Some(m) = stream.message().await.map_err(|e| {
        pb.abandon();
        status_error(e)
    })? {
        if let Some(spb::fetch_footage_grant_response::Part::Data(d)) = m.part {
            hash.update(&d);
            file.write_all(&d)
                .with_context(|| format!("writing {}", part.display()))?;
            pb.inc(d.len() as u64);
        }
    }
    pb.finish_and_clear();
    file.sync_all()
        .with_context(|| format!("writing {}", part.display()))?;
    let sha = hex::encode(hash.finalize());
    if sha != grant.bundle_sha256 {
        anyhow::bail!(
            "the download of grant {} is damaged: SHA-256 {sha}, the grant says {}; {} kept for \
             inspection",
            grant.id,
            grant.bundle_sha256,
            part.display()
        );
    }
    // Storage verified it with the partner's pinned key before sending; check the bytes that
    // arrived here too (signature by the key the manifest names, every file, every link).
    let report = crate::evidence::verify_file(&part, Vec::new()).await?;
    if !report.problems.is_empty() {
        anyhow::bail!(
            "grant {} did not verify after download ({} kept for inspection):\n  {}",
            grant.id,
            part.display(),
            report.problems.join("\n  ")
        );
    }
    std::fs::rename(&part, &out).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", out.display());
    eprintln!(
        "wrote {} ({}, SHA-256 {sha})\nsigned by {}'s evidence key {} — verified by this site's \
         storage against the key pinned for {} and again here: signature, files and chain \
         intact\nkeep it no longer than the agreement allows ({})",
        out.display(),
        indicatif::HumanBytes(grant.bundle_size),
        grant.owner_site,
        report.signing_key,
        grant.owner_site,
        grant
            .keep_for
            .map(
                |d| humantime::format_duration(std::time::Duration::from_secs(
                    d.seconds.max(0) as u64
                ))
                .to_string()
            )
            .unwrap_or_else(|| "see the agreement".into())
    );
    Ok(())
}
