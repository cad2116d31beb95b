//! The Helm chart renders (`helm lint`, `helm template`) into valid Kubernetes objects, with
//! the same CRDs as `crds/` and an operator config the operator accepts.
//!
//! Needs `helm` on PATH (scripts/kube.sh puts it there); skipped with a note when it is
//! missing, a failure under `CI`.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/kordon")
}

fn helm_available() -> bool {
    let ok = Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but helm is not on PATH: eval \"$(bash scripts/kube.sh env)\"");
        }
        eprintln!("skipped: helm is not on PATH (eval \"$(bash scripts/kube.sh env)\")");
    }
    ok
}

fn helm(args: &[&str]) -> String {
    let out = Command::new("helm").args(args).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every document of `helm template`, parsed as the typed object of its kind.
fn render(extra: &[&str]) -> Vec<(String, serde_yaml::Value)> {
    let chart = chart();
    let mut args = vec![
        "template",
        "kordon",
        chart.to_str().unwrap(),
        "--namespace",
        "kordon-system",
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    let text = helm(&args);
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_yaml::Value::deserialize(doc).expect("YAML");
        if v.is_null() {
            continue;
        }
        let kind = v["kind"]
            .as_str()
            .expect("every object has a kind")
            .to_string();
        let json = serde_json::to_value(&v).unwrap();
        let parsed = match kind.as_str() {
            "CustomResourceDefinition" => {
                serde_json::from_value::<CustomResourceDefinition>(json).map(|_| ())
            }
            "Deployment" => serde_json::from_value::<Deployment>(json).map(|_| ()),
            "Service" => serde_json::from_value::<Service>(json).map(|_| ()),
            "ServiceAccount" => serde_json::from_value::<ServiceAccount>(json).map(|_| ()),
            "ConfigMap" => serde_json::from_value::<ConfigMap>(json).map(|_| ()),
            "Secret" => serde_json::from_value::<Secret>(json).map(|_| ()),
            "ClusterRole" => serde_json::from_value::<ClusterRole>(json).map(|_| ()),
            "ClusterRoleBinding" => serde_json::from_value::<ClusterRoleBinding>(json).map(|_| ()),
            "Role" => serde_json::from_value::<Role>(json).map(|_| ()),
            "RoleBinding" => serde_json::from_value::<RoleBinding>(json).map(|_| ()),
            other => panic!("unexpected kind {other} in the chart"),
        };
        parsed.unwrap_or_else(|e| panic!("{kind} does not parse: {e}"));
        out.push((kind, v));
    }
    out
}

fn kinds(objs: &[(String, serde_yaml::Value)]) -> Vec<&str> {
    objs.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn chart_lints_and_renders_valid_objects() {
    if !helm_available() {
        return;
    }
    let lint = helm(&["lint", "--strict", chart().to_str().unwrap()]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let objs = render(&[]);
    let k = kinds(&objs);
    for want in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
    ] {
        assert!(k.contains(&want), "no {want} in {k:?}");
    }
    assert!(!k.contains(&"Secret"), "no secrets unless values ask");

    // The chart's CRDs are crdgen's.
    let crds: Vec<_> = objs
        .iter()
        .filter(|(k, _)| k == "CustomResourceDefinition")
        .map(|(_, v)| v["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        crds,
        [
            "sites.kordon.io",
            "cameras.kordon.io",
            "alertrules.kordon.io",
            "partners.kordon.io"
        ]
    );

    // The operator config the chart renders is one the operator accepts.
    let cm = objs.iter().find(|(k, _)| k == "ConfigMap").unwrap();
    let text = cm.1["data"]["operator.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("operator.yaml");
    std::fs::write(&path, text).unwrap();
    let config = kordon_operator::OperatorConfig::load(&kordon_operator::OperatorFlags {
        config: Some(path),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("chart's operator.yaml rejected: {e}\n{text}"));
    assert!(config.leader_election.enabled);
    assert_eq!(config.namespace, None);
    assert_eq!(config.image, "kordon/kordon:0.1.0");

    // Least privilege: no wildcard; Secrets (the site CAs and certificates) by name only,
    // never listed or watched.
    let role = objs.iter().find(|(k, _)| k == "ClusterRole").unwrap();
    let rules = role.1["rules"].as_sequence().unwrap();
    for r in rules {
        let text = serde_yaml::to_string(r).unwrap();
        assert!(!text.contains('*'), "wildcard in {text}");
    }
    let secrets: Vec<_> = rules
        .iter()
        .filter(|r| {
            r["resources"]
                .as_sequence()
                .is_some_and(|res| res.iter().any(|x| x.as_str() == Some("secrets")))
        })
        .collect();
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert_eq!(
        secrets[0]["resources"].as_sequence().unwrap().len(),
        1,
        "secrets share no rule"
    );
    let verbs: Vec<&str> = secrets[0]["verbs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(verbs, ["get", "create", "patch", "delete"]);

    // What the controllers watch and whose status they write, AlertRules included.
    let grants = |resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| {
                r["resources"]
                    .as_sequence()
                    .is_some_and(|res| res.iter().any(|x| x.as_str() == Some(resource)))
            })
            .flat_map(|r| r["verbs"].as_sequence().unwrap().clone())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    for resource in ["sites", "cameras", "alertrules", "partners"] {
        let verbs = grants(resource);
        assert!(
            ["list", "watch"]
                .iter()
                .all(|v| verbs.iter().any(|g| g == v)),
            "{resource}: {verbs:?}"
        );
        let status = grants(&format!("{resource}/status"));
        assert!(
            status.iter().any(|v| v == "patch"),
            "{resource}/status: {status:?}"
        );
    }
}

#[test]
fn a_namespaced_install_gets_roles_and_the_values_it_asked_for() {
    if !helm_available() {
        return;
    }
    let objs = render(&[
        "--set",
        "operator.watchNamespace=sites",
        "--set",
        "database.url=postgres://kordon@db:5432/kordon",
        "--set",
        "objectStorage.accessKeyId=AK",
        "--set",
        "objectStorage.secretAccessKey=SK",
        "--set",
        "telemetry.otlpEndpoint=http://otel:4317",
        "--set",
        "operator.leaderElection=false",
    ]);
    let k = kinds(&objs);
    assert!(!k.contains(&"ClusterRole"), "{k:?}");
    assert_eq!(k.iter().filter(|k| **k == "Secret").count(), 2);
    let role = objs.iter().find(|(k, _)| k == "Role").unwrap();
    assert_eq!(role.1["metadata"]["namespace"].as_str(), Some("sites"));
    let deployment = objs.iter().find(|(k, _)| k == "Deployment").unwrap();
    let env =
        serde_yaml::to_string(&deployment.1["spec"]["template"]["spec"]["containers"][0]["env"])
            .unwrap();
    assert!(env.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{env}");
    let cm = objs.iter().find(|(k, _)| k == "ConfigMap").unwrap();
    let text = cm.1["data"]["operator.yaml"].as_str().unwrap();
    let config: kordon_operator::OperatorConfig = serde_yaml::from_str(text).unwrap();
    config.validate().unwrap();
    assert_eq!(config.namespace.as_deref(), Some("sites"));
    assert!(!config.leader_election.enabled);
}
