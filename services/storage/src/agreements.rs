//! Bilateral acceptance for a storage service running on its own (Kubernetes): the same check
//! alerting makes, so that footage flows only while both sides declare matching agreements.
//!
//! For each declared partner, every `partners.exchange_interval` (every 5 s while not
//! accepted) storage calls the partner's `ExchangeAgreement` over the partner link with what
//! this site declared and compares the answer ([`kordon_runtime::partner::compare`]); the
//! result is the storage's agreement check ([`crate::Storage::set_agreement_check`]). Until the
//! first answer, nothing flows. In standalone, alerting's own check is used instead.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kordon_runtime::partner::{Exchanged, PartnerConfig, PartnersConfig, exchange};
use tokio_util::sync::CancellationToken;

use crate::Storage;

const RETRY: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs the check and keeps it current until `shutdown`.
pub async fn watch(storage: Storage, shutdown: CancellationToken) {
    let config = storage.partners().clone();
    if config.partners.is_empty() {
        return;
    }
    let accepted: Arc<RwLock<BTreeMap<String, bool>>> = Arc::default();
    {
        let accepted = accepted.clone();
        storage.set_agreement_check(Arc::new(move |site: &str| {
            accepted
                .read()
                .map(|m| m.get(site).copied().unwrap_or(false))
                .unwrap_or(false)
        }));
    }
    let mut tasks = Vec::new();
    for p in config.partners.clone() {
        tasks.push(tokio::spawn(one(
            config.clone(),
            p,
            accepted.clone(),
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn one(
    config: PartnersConfig,
    partner: PartnerConfig,
    accepted: Arc<RwLock<BTreeMap<String, bool>>>,
    shutdown: CancellationToken,
) {
    let channel = match kordon_runtime::partner::connect(&config, &partner, &partner.endpoint) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(partner = %partner.site, error = %e,
                            "partner link unusable: no footage flows with this partner");
            return;
        }
    };
    let mut last: Option<Result<(), String>> = None;
    loop {
        let outcome = match exchange(&config, &partner, channel.clone(), CALL_TIMEOUT).await {
            Exchanged::Answered { outcome, .. } => outcome,
            Exchanged::Failed(s) => Err(format!("{} unreachable: {}", partner.site, s.message())),
        };
        let ok = outcome.is_ok();
        if last.as_ref() != Some(&outcome) {
            match &outcome {
                Ok(()) => tracing::info!(partner = %partner.site,
                                         "agreement accepted by both sides: footage requests may flow"),
                Err(why) => tracing::warn!(partner = %partner.site, reason = %why,
                                           "agreement not in force: no footage flows"),
            }
        }
        if let Ok(mut m) = accepted.write() {
            m.insert(partner.site.clone(), ok);
        }
        last = Some(outcome);
        let wait = if ok {
            config.exchange_interval
        } else {
            RETRY.min(config.exchange_interval)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
