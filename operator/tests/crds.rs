//! `crds/` and the chart's `crds/` hold exactly what `kordon crdgen` prints.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_crdgen() {
    let generated = kordon_operator::crds_yaml().expect("CRDs render");
    for file in ["crds/kordon.io.yaml", "charts/kordon/crds/kordon.io.yaml"] {
        let committed =
            std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            committed == generated,
            "{file} is out of date: run `kordon crdgen > {file}`"
        );
    }
}

#[test]
fn crds_parse_as_four_custom_resource_definitions() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use serde::Deserialize;
    let text = kordon_operator::crds_yaml().unwrap();
    let crds: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| CustomResourceDefinition::deserialize(doc).unwrap())
        .collect();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sites.kordon.io",
            "cameras.kordon.io",
            "alertrules.kordon.io",
            "partners.kordon.io"
        ]
    );
    let site = &crds[0].spec.versions[0];
    let scale = site.subresources.as_ref().unwrap().scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.ingest.replicas");
    assert_eq!(scale.status_replicas_path, ".status.ingest.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.ingest.selector")
    );
    let camera_columns: Vec<_> = crds[1].spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for col in [
        "Site",
        "Replica",
        "Codec",
        "Resolution",
        "FPS",
        "Recording",
        "Ready",
        "Last segment",
        "Age",
    ] {
        assert!(camera_columns.contains(&col), "missing column {col}");
    }
    let rules = &crds[2].spec;
    assert_eq!(rules.scope, "Namespaced");
    assert_eq!(
        rules.names.short_names.as_deref(),
        Some(&["ar".to_string()][..])
    );
    let rule_columns: Vec<_> = rules.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(rule_columns, ["Site", "Severity", "Ready", "Age"]);
    let partners = &crds[3].spec;
    assert_eq!(partners.scope, "Namespaced");
    assert_eq!(
        partners.names.short_names.as_deref(),
        Some(&["pt".to_string()][..])
    );
    let partner_columns: Vec<_> = partners.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        partner_columns,
        ["Site", "Partner", "State", "Last Contact", "Age"]
    );
    // Go's YAML 1.1 reader (kubectl, helm) would read a bare `y` as `true`.
    assert!(
        !text.lines().any(|l| l.trim_end().ends_with("- y")),
        "unquoted y"
    );
}
