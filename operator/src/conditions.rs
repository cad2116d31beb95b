//! Status conditions: built fresh on every reconcile, keeping the transition time of a
//! condition whose status did not change (so an unchanged status is byte-for-byte unchanged
//! and needs no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// A condition of `type_`, observed at `generation`; `previous` supplies the transition time
/// when the status is unchanged.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let mut message: String = message.into();
    // The apiserver caps condition messages at 32768 bytes.
    if message.len() > 1024 {
        let mut end = 1024;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub fn bool_status(b: bool) -> &'static str {
    if b { TRUE } else { FALSE }
}

/// Server-side applies `status` to `obj` (in `ns`) unless `current` already equals it; an
/// object deleted meanwhile is no error. The one status write of AlertRules and Partners.
pub async fn write_status<K, S>(
    client: &kube::Client,
    obj: &K,
    ns: &str,
    current: Option<&S>,
    status: &S,
) -> crate::Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    use kube::ResourceExt;
    if current == Some(status) {
        return Ok(());
    }
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), ns);
    let patch = kube::api::Patch::Apply(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    }));
    match api
        .patch_status(
            &obj.name_any(),
            &kube::api::PatchParams::apply(crate::config::FIELD_MANAGER).force(),
            &patch,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(2_000).unwrap());
        let first = condition(&[], "Ready", TRUE, "Recording", "", Some(1), &t0);
        assert_eq!(first.last_transition_time, t0);
        let same = condition(
            std::slice::from_ref(&first),
            "Ready",
            TRUE,
            "Recording",
            "",
            Some(2),
            &t1,
        );
        assert_eq!(same.last_transition_time, t0);
        assert_eq!(same.observed_generation, Some(2));
        let flipped = condition(&[first], "Ready", FALSE, "Offline", "x", Some(2), &t1);
        assert_eq!(flipped.last_transition_time, t1);
        let long = condition(&[], "Ready", FALSE, "R", "é".repeat(2000), None, &t1);
        assert!(long.message.len() <= 1024);
    }
}
