//! `kordon partners`: the agreements with partner installations, whether both sides declared
//! the same terms (and if not, which differ), the last contact, and what was shared.

use kordon_proto::alerting::v1 as pb;
use kordon_proto::alerting::v1::alerting_service_client::AlertingServiceClient;
use kordon_runtime::client;
use kordon_runtime::partner::Terms;

use crate::client::{ClientFlags, Output, rfc3339, status_error};

#[derive(Debug, clap::Subcommand)]
pub enum PartnersCommand {
    /// The partners, one line each: state, last contact, alerts forwarded and received.
    List(ClientFlags),
    /// One partner in full: the terms each way, the state and why, counters and errors.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientFlags,
    /// The partner's site name, e.g. edirne.
    pub partner: String,
}

pub async fn run(cmd: PartnersCommand) -> anyhow::Result<()> {
    match cmd {
        PartnersCommand::List(f) => list(f).await,
        PartnersCommand::Status(a) => status(a).await,
    }
}

async fn agreements(flags: &ClientFlags) -> anyhow::Result<Vec<pb::SharingAgreement>> {
    let mut c = AlertingServiceClient::new(client::connect(&flags.options()).await?);
    Ok(
        c.list_sharing_agreements(pb::ListSharingAgreementsRequest {})
            .await
            .map_err(status_error)?
            .into_inner()
            .agreements,
    )
}

fn state_name(s: i32) -> &'static str {
    match pb::AgreementState::try_from(s).unwrap_or_default() {
        pb::AgreementState::Accepted => "accepted",
        pb::AgreementState::Mismatch => "mismatch",
        pb::AgreementState::Unreachable => "unreachable",
        pb::AgreementState::Pending | pb::AgreementState::Unspecified => "pending",
    }
}

fn terms_json(t: &Option<pb::SharingTerms>) -> serde_json::Value {
    serde_json::to_value(Terms::from_proto(&t.clone().unwrap_or_default())).unwrap_or_default()
}

fn json(a: &pb::SharingAgreement) -> serde_json::Value {
    let st = a.status.clone().unwrap_or_default();
    serde_json::json!({
        "partner": a.partner_site,
        "display_name": a.partner_display_name,
        "endpoint": a.partner_endpoint,
        "storage_endpoint": a.partner_storage_endpoint,
        "state": state_name(st.state),
        "state_reason": st.state_reason,
        "last_contact_at": rfc3339(&st.last_contact_at),
        "terms_digest": st.terms_digest,
        "partner_terms_digest": st.partner_terms_digest,
        "shares": terms_json(&a.shares),
        "receives": terms_json(&a.receives),
        "forwarded": st.forwarded_total,
        "failed": st.failed_total,
        "pending": st.pending,
        "last_forwarded_at": rfc3339(&st.last_forwarded_at),
        "last_error": st.last_error,
        "received": st.received_total,
        "last_received_at": rfc3339(&st.last_received_at),
    })
}

async fn list(flags: ClientFlags) -> anyhow::Result<()> {
    let rows: Vec<_> = agreements(&flags).await?.iter().map(json).collect();
    match flags.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            if rows.is_empty() {
                println!("no partners declared (Partner resources, or `partners:` in the config)");
                return Ok(());
            }
            println!(
                "{:<14} {:<12} {:<21} {:>9} {:>8} {:>7}  REASON",
                "PARTNER", "STATE", "LAST CONTACT", "FORWARDED", "RECEIVED", "PENDING"
            );
            for r in &rows {
                println!(
                    "{:<14} {:<12} {:<21} {:>9} {:>8} {:>7}  {}",
                    r["partner"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["last_contact_at"].as_str().unwrap_or("never"),
                    r["forwarded"],
                    r["received"],
                    r["pending"],
                    r["state_reason"].as_str().unwrap_or(""),
                );
            }
        }
    }
    Ok(())
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let all = agreements(&a.client).await?;
    let Some(found) = all.iter().find(|x| x.partner_site == a.partner) else {
        let known: Vec<_> = all.iter().map(|x| x.partner_site.as_str()).collect();
        anyhow::bail!(
            "no agreement with `{}` is declared here (partners: {})",
            a.partner,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let r = json(found);
    match a.client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Output::Table => {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            println!("partner        {} ({})", s("partner"), s("display_name"));
            println!("endpoint       {}", s("endpoint"));
            println!("state          {}", s("state"));
            if !s("state_reason").is_empty() {
                println!("why            {}", s("state_reason"));
            }
            println!(
                "last contact   {}",
                r["last_contact_at"].as_str().unwrap_or("never")
            );
            println!("terms digest   here {}", s("terms_digest"));
            println!("               there {}", s("partner_terms_digest"));
            println!(
                "shared         {} forwarded, {} failed, {} pending; {} received",
                r["forwarded"], r["failed"], r["pending"], r["received"]
            );
            if !s("last_error").is_empty() {
                println!("last error     {}", s("last_error"));
            }
            println!(
                "we share       {}",
                serde_json::to_string(&r["shares"]).unwrap_or_default()
            );
            println!(
                "we receive     {}",
                serde_json::to_string(&r["receives"]).unwrap_or_default()
            );
        }
    }
    Ok(())
}
