//! The AlertRule reconciler: the status of rules whose Site is missing or being deleted.
//!
//! A rule whose Site exists is rendered, and its status written, by the Site reconciler right
//! after it applied the site's configuration ([`crate::site`]): only it knows the rule is in
//! the ConfigMap. This reconciler covers the rest — the Site does not exist (`SiteNotFound`) or
//! is going (`SiteDeleting`) — so the two never write the same rule's status for the same
//! state of its Site. It runs when the rule changes, when a Site is being deleted (for that
//! Site's rules), and every [`RECHECK`].
//!
//! The status is written (server-side apply, field manager `kordon-operator`) only when it
//! differs from what the rule already shows.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::Instrument;

use crate::controller::Context;
use crate::crd::{AlertRule, Site};
use crate::{Error, Result, alerting};

pub const CONTROLLER: &str = "alertrule";
/// How often a rule is looked at without a change (a Site deleted while the operator was
/// away).
pub const RECHECK: Duration = Duration::from_secs(300);
/// How soon a rule of a Site being deleted is looked at again (until the Site is gone).
const WHILE_SITE_DELETES: Duration = Duration::from_secs(5);

/// Reconciles one AlertRule.
pub async fn reconcile(rule: Arc<AlertRule>, ctx: Arc<Context>) -> Result<Action> {
    let ns = rule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let span = tracing::info_span!(
        "reconcile",
        controller = CONTROLLER,
        namespace = %ns,
        site = %rule.spec.site,
        rule = %rule.name_any(),
    );
    async move {
        let _timer = ctx.metrics.start(CONTROLLER);
        let site = ctx.sites.get(&ObjectRef::new(&rule.spec.site).within(&ns));
        let deleting = match site.as_deref() {
            // The Site reconciler writes this rule's status.
            Some(s) if s.metadata.deletion_timestamp.is_none() => {
                return Ok(Action::requeue(RECHECK));
            }
            Some(_) => true,
            None => false,
        };
        let status = alerting::desired_status(&rule, site.as_deref(), &crate::conditions::now());
        write_status(&ctx, &rule, &ns, &status).await?;
        Ok(Action::requeue(if deleting {
            WHILE_SITE_DELETES
        } else {
            RECHECK
        }))
    }
    .instrument(span)
    .await
}

/// Writes `status` unless the rule already shows it (see [`crate::conditions::write_status`]).
pub async fn write_status(
    ctx: &Context,
    rule: &AlertRule,
    ns: &str,
    status: &crate::crd::AlertRuleStatus,
) -> Result<()> {
    crate::conditions::write_status(&ctx.client, rule, ns, rule.status.as_ref(), status).await
}

/// The rules of a Site being deleted (what the Site watch of this controller maps to).
pub fn rules_of_deleted_site(rules: &Store<AlertRule>, site: &Site) -> Vec<ObjectRef<AlertRule>> {
    if site.metadata.deletion_timestamp.is_none() {
        return Vec::new();
    }
    let Some(ns) = site.namespace() else {
        return Vec::new();
    };
    let name = site.name_any();
    rules
        .state()
        .iter()
        .filter(|r| r.spec.site == name && r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Counts the failure and retries with a delay.
pub fn error_policy(rule: Arc<AlertRule>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(rule = %rule.name_any(), %error, "alert rule reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    Action::requeue(Duration::from_secs(5))
}
