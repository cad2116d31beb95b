//! `kordon operator` and `kordon crdgen`: thin wrappers over the `kordon-operator` crate.

use kordon_operator::{OperatorConfig, OperatorFlags};

/// Loads and validates the operator's configuration, then runs it until SIGTERM/Ctrl-C.
pub async fn run(flags: &OperatorFlags) -> anyhow::Result<()> {
    let config = OperatorConfig::load(flags)?;
    let _telemetry = kordon_runtime::telemetry::init("operator", &config.log)?;
    tracing::info!(
        version = kordon_runtime::VERSION,
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        leader_election = config.leader_election.enabled,
        "starting operator"
    );
    let shutdown = kordon_runtime::shutdown::Shutdown::install();
    kordon_operator::run(config, shutdown).await?;
    Ok(())
}

/// Prints the Site and Camera CRDs (what `crds/` holds).
pub fn crdgen() -> anyhow::Result<()> {
    print!("{}", kordon_operator::crds_yaml()?);
    Ok(())
}
