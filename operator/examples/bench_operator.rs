//! Benchmark (not a test): how fast the operator places 10,000 Cameras across 5 Sites on a
//! real kube-apiserver, and how much memory it needs.
//!
//! ```sh
//! bash scripts/kube.sh start && eval "$(bash scripts/kube.sh env)"
//! cargo build --release -p kordon
//! cargo run --release -p kordon-operator --example bench_operator -- \
//!     --kordon "$CARGO_TARGET_DIR/release/kordon" [--sites 5] [--cameras 10000]
//! ```
//!
//! Steps: creates a fresh namespace with the Sites (4 ingest replicas each) and Cameras while
//! no operator runs; starts `kordon operator` (a separate process, leader election on) for
//! that namespace; measures the time until every Camera's status names its ingest replica,
//! and the operator's resident memory (peak of 2 Hz samples, from /proc). Then scales one Site
//! from 4 to 5 replicas and measures how many cameras moved and how long re-placement took.
//! Ingest is not running (no kubelet here), so statuses say "IngestUnreachable": placement is
//! what is measured. Prints one summary line per figure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kordon_operator::crd::{Camera, Site};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;

struct Args {
    kordon: String,
    sites: usize,
    cameras: usize,
    timeout: Duration,
}

fn args() -> Args {
    let mut a = Args {
        kordon: String::new(),
        sites: 5,
        cameras: 10_000,
        timeout: Duration::from_secs(600),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--kordon" => a.kordon = value(),
            "--sites" => a.sites = value().parse().expect("--sites N"),
            "--cameras" => a.cameras = value().parse().expect("--cameras N"),
            "--timeout-secs" => a.timeout = Duration::from_secs(value().parse().expect("seconds")),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        !a.kordon.is_empty(),
        "--kordon PATH (the kordon binary) is required"
    );
    a
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Camera name -> assigned replica, from a watch-fed cache (polling lists of 10,000 objects
/// would load the apiserver more than the operator does).
fn assignments(store: &Store<Camera>) -> BTreeMap<String, Option<String>> {
    store
        .state()
        .iter()
        .map(|c| {
            let replica = c.status.as_ref().and_then(|s| s.replica.clone());
            (format!("{}/{}", c.spec.site, c.name_any()), replica)
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args = args();
    kordon_runtime::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a kubeconfig (KUBECONFIG from scripts/kube.sh env)");
    let ns = format!(
        "kordon-bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );

    // CRDs and namespace.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in [Site::crd(), Camera::crd()] {
        crds.patch(
            crd.metadata.name.as_deref().unwrap(),
            &PatchParams::apply("kordon-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap(),
        )
        .await
        .expect("namespace");

    let sites: Api<Site> = Api::namespaced(client.clone(), &ns);
    let cameras: Api<Camera> = Api::namespaced(client.clone(), &ns);
    let site_names: Vec<String> = (0..args.sites).map(|i| format!("site-{i}")).collect();
    for s in &site_names {
        let site = json!({
            "apiVersion": "kordon.io/v1alpha1", "kind": "Site",
            "metadata": { "name": s },
            "spec": { "storage": { "bucket": format!("kordon-{s}") }, "ingest": { "replicas": 4 } },
        });
        sites
            .create(
                &PostParams::default(),
                &serde_json::from_value(site).unwrap(),
            )
            .await
            .expect("site");
    }
    let created = Instant::now();
    futures::stream::iter(0..args.cameras)
        .map(|i| {
            let cameras = cameras.clone();
            let site = site_names[i % site_names.len()].clone();
            async move {
                let cam = json!({
                    "apiVersion": "kordon.io/v1alpha1", "kind": "Camera",
                    "metadata": { "name": format!("cam-{i:05}") },
                    "spec": { "site": site, "streams": { "record": format!("rtsp://10.9.0.1:554/{i}/main") } },
                });
                cameras
                    .create(&PostParams::default(), &serde_json::from_value(cam).unwrap())
                    .await
                    .expect("camera");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    println!(
        "bench: created {} cameras in {} sites in {:.1}s (namespace {ns})",
        args.cameras,
        args.sites,
        created.elapsed().as_secs_f64()
    );

    // Watch the cameras (as a dashboard would) to see placements arrive.
    let (store, writer) = reflector::store::<Camera>();
    let watch = reflector(writer, watcher(cameras.clone(), watcher::Config::default()));
    tokio::spawn(watch.for_each(|_| async {}));
    store.wait_until_ready().await.expect("camera watch");
    while store.state().len() < args.cameras {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The operator, as its own process.
    let config = std::env::temp_dir().join(format!("{ns}-operator.yaml"));
    std::fs::write(
        &config,
        format!(
            "namespace: {ns}\nadmin_listen: 127.0.0.1:0\nleader_election:\n  lease_namespace: {ns}\n  identity: bench\n\
             ingest:\n  address: \"http://127.0.0.1:1\"\n  timeout: 1s\nlog:\n  filter: warn\n"
        ),
    )
    .expect("config file");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&args.kordon)
        .args(["operator", "--config"])
        .arg(&config)
        .kill_on_drop(true)
        .spawn()
        .expect("kordon operator starts");
    let pid = child.id().expect("pid");
    let mut peak = 0u64;

    let placed_in = loop {
        if let Some(kib) = rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("operator exited: {status}");
        }
        let a = assignments(&store);
        let placed = a.values().filter(|r| r.is_some()).count();
        if placed == args.cameras {
            break started.elapsed();
        }
        if started.elapsed() > args.timeout {
            panic!(
                "only {placed} of {} cameras placed after {:?}",
                args.cameras, args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "bench: all {} cameras show an assigned replica {:.1}s after the operator started",
        args.cameras,
        placed_in.as_secs_f64()
    );
    let rss_after = rss_kib(pid).unwrap_or(0);
    println!(
        "bench: operator RSS peak {:.1} MiB, {:.1} MiB when all were placed",
        peak as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );

    // Scale one site 4 -> 5.
    let before = assignments(&store);
    let target = &site_names[0];
    let scaled = Instant::now();
    sites
        .patch_scale(
            target,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 5 } })),
        )
        .await
        .expect("scale");
    let (after, took) = loop {
        if let Some(kib) = rss_kib(pid) {
            peak = peak.max(kib);
        }
        let a = assignments(&store);
        let done = a
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{target}/")))
            .all(|(k, r)| {
                let cam = k.split_once('/').map(|(_, c)| c).unwrap_or_default();
                let want = kordon_operator::placement::replica_for(target, cam, 5)
                    .map(|o| kordon_operator::placement::replica_name(target, o));
                *r == want
            });
        if done {
            break (a, scaled.elapsed());
        }
        if scaled.elapsed() > args.timeout {
            panic!("re-placement did not finish in {:?}", args.timeout);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let in_site = before
        .keys()
        .filter(|k| k.starts_with(&format!("{target}/")))
        .count();
    let moved = before
        .iter()
        .filter(|(k, r)| k.starts_with(&format!("{target}/")) && after.get(*k) != Some(*r))
        .count();
    let elsewhere = before
        .iter()
        .filter(|(k, r)| !k.starts_with(&format!("{target}/")) && after.get(*k) != Some(*r))
        .count();
    println!(
        "bench: scaling {target} 4 -> 5 moved {moved} of {in_site} cameras ({:.1}%, ideal 20%), \
         {elsewhere} elsewhere; re-placed in {:.1}s",
        100.0 * moved as f64 / in_site.max(1) as f64,
        took.as_secs_f64()
    );
    println!(
        "bench: operator RSS peak {:.1} MiB overall",
        peak as f64 / 1024.0
    );

    // Clean up while the operator still runs (it removes the Sites' finalizers).
    let _ = cameras
        .delete_collection(&kube::api::DeleteParams::default(), &ListParams::default())
        .await;
    for s in &site_names {
        let _ = sites.delete(s, &kube::api::DeleteParams::default()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !sites
            .list(&ListParams::default())
            .await
            .map(|l| l.items.is_empty())
            .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&config);
    let _ = namespaces
        .delete(&ns, &kube::api::DeleteParams::default())
        .await;
}
