//! Reconciler scenarios against a mocked apiserver: each API request is asserted in order
//! (kube-rs/controller-rs's `fixtures.rs` pattern), so these tests pin down exactly what the
//! operator asks of Kubernetes.

use std::sync::Arc;

use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::crd::{CameraStatus, Site};
use crate::fixtures::{NS, camera, context, echo, list, site, with_status};
use crate::{camera as camera_rec, site as site_rec};

const SITES: &str = "/apis/kordon.io/v1alpha1/namespaces/kordon/sites";

fn finalized(mut s: Site) -> Site {
    s.metadata.finalizers = Some(vec![site_rec::FINALIZER.to_string()]);
    s
}

fn assert_ssa(q: &str) {
    assert!(q.contains("fieldManager=kordon-operator"), "{q}");
    assert!(q.contains("force=true"), "{q}");
}

#[tokio::test]
async fn a_new_site_first_gets_the_finalizer() {
    let s = site("burgas", 2);
    let (ctx, mut api) = context(std::slice::from_ref(&s), &[]);
    let reply = serde_json::to_value(finalized(s.clone())).unwrap();
    let server = tokio::spawn(async move {
        let seen = api
            .expect(Method::PATCH, &format!("{SITES}/burgas"), |_| (200, reply))
            .await;
        assert_eq!(
            seen.body,
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": [site_rec::FINALIZER] },
            ])
        );
        api.silence().await;
    });
    let action = site_rec::reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn a_finalized_site_applies_its_workloads_then_its_status() {
    let s = finalized(site("burgas", 3));
    let cams: Vec<_> = (0..5)
        .map(|i| camera(&format!("cam-{i}"), "burgas"))
        .collect();
    let (ctx, mut api) = context(std::slice::from_ref(&s), &cams);
    let site_json = serde_json::to_value(&s).unwrap();
    let base = format!("/api/v1/namespaces/{NS}");
    let apps = format!("/apis/apps/v1/namespaces/{NS}");
    let server = tokio::spawn(async move {
        let cm = api
            .expect(
                Method::PATCH,
                &format!("{base}/configmaps/burgas-config"),
                echo,
            )
            .await;
        assert_ssa(&cm.query);
        assert!(
            cm.body["data"]["site.yaml"]
                .as_str()
                .unwrap()
                .contains("kordon-burgas")
        );
        let ingest = api
            .expect(
                Method::PATCH,
                &format!("{base}/configmaps/burgas-ingest"),
                echo,
            )
            .await;
        let data = ingest.body["data"].as_object().unwrap();
        assert_eq!(data.len(), 3, "one config per replica");
        let listed: usize = data
            .values()
            .map(|v| v.as_str().unwrap().matches("- name: cam-").count())
            .sum();
        assert_eq!(listed, 5);
        for svc in ["ingest", "storage", "transcode", "detection", "alerting"] {
            let seen = api
                .expect(
                    Method::PATCH,
                    &format!("{base}/services/burgas-{svc}"),
                    echo,
                )
                .await;
            assert_ssa(&seen.query);
        }
        let pvc = api
            .expect(
                Method::PATCH,
                &format!("{base}/persistentvolumeclaims/burgas-storage-data"),
                echo,
            )
            .await;
        assert!(pvc.body["metadata"].get("ownerReferences").is_none());
        let sts = api
            .expect(
                Method::PATCH,
                &format!("{apps}/statefulsets/burgas-ingest"),
                echo,
            )
            .await;
        assert_ssa(&sts.query);
        assert_eq!(sts.body["spec"]["replicas"], json!(3));
        assert_eq!(
            sts.body["metadata"]["ownerReferences"][0]["kind"],
            json!("Site")
        );
        assert_eq!(
            sts.body["metadata"]["ownerReferences"][0]["controller"],
            json!(true)
        );
        for d in ["storage", "transcode", "detection", "alerting"] {
            api.expect(
                Method::PATCH,
                &format!("{apps}/deployments/burgas-{d}"),
                echo,
            )
            .await;
        }
        let status = api
            .expect(
                Method::PATCH,
                &format!("{SITES}/burgas/status"),
                with_status(site_json),
            )
            .await;
        assert_ssa(&status.query);
        let st = &status.body["status"];
        assert_eq!(st["cameras"]["total"], json!(5));
        assert_eq!(st["cameras"]["unknown"], json!(5));
        assert_eq!(st["ingest"]["replicas"], json!(3));
        assert_eq!(st["observedGeneration"], json!(1));
        let ready = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], json!("False"));
        assert_eq!(ready["reason"], json!("IngestUnreachable"));
        assert_eq!(ready["observedGeneration"], json!(1));
        api.silence().await;
    });
    let action = site_rec::reconcile(Arc::new(s), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(ctx.config.ingest.status_interval));
    server.await.unwrap();
}

#[tokio::test]
async fn a_deleted_site_deletes_what_it_made_then_drops_the_finalizer() {
    let mut s = finalized(site("burgas", 1));
    s.metadata.deletion_timestamp = Some(crate::conditions::now());
    let (ctx, mut api) = context(std::slice::from_ref(&s), &[]);
    let server = tokio::spawn(async move {
        let apps = format!("/apis/apps/v1/namespaces/{NS}");
        let base = format!("/api/v1/namespaces/{NS}");
        let sts = api
            .expect(Method::GET, &format!("{apps}/statefulsets"), |_| {
                (200, list("StatefulSet", vec![json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": { "name": "burgas-ingest", "namespace": NS },
                    "spec": { "selector": {}, "template": {}, "serviceName": "burgas-ingest" },
                })]))
            })
            .await;
        assert!(
            sts.query
                .contains("labelSelector=kordon.io%2Fsite%3Dburgas"),
            "{}",
            sts.query
        );
        api.expect(
            Method::DELETE,
            &format!("{apps}/statefulsets/burgas-ingest"),
            |_| {
                (
                    200,
                    json!({ "apiVersion": "v1", "kind": "Status", "status": "Success" }),
                )
            },
        )
        .await;
        api.expect(Method::GET, &format!("{apps}/deployments"), |_| {
            (200, list("Deployment", vec![]))
        })
        .await;
        api.expect(Method::GET, &format!("{base}/services"), |_| {
            (200, list("Service", vec![]))
        })
        .await;
        api.expect(Method::GET, &format!("{base}/configmaps"), |_| {
            (200, list("ConfigMap", vec![]))
        })
        .await;
        let event = api
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
                echo,
            )
            .await;
        assert_eq!(event.body["reason"], json!("Deleted"));
        assert!(
            event.body["note"]
                .as_str()
                .unwrap()
                .contains("deleted 1 objects")
        );
        let fin = api
            .expect(Method::PATCH, &format!("{SITES}/burgas"), |seen| {
                let _ = seen;
                (
                    200,
                    json!({
                        "apiVersion": "kordon.io/v1alpha1", "kind": "Site",
                        "metadata": { "name": "burgas", "namespace": NS },
                        "spec": { "storage": { "bucket": "kordon-burgas" } },
                    }),
                )
            })
            .await;
        let ops: Vec<Value> = serde_json::from_value(fin.body).unwrap();
        assert!(
            ops.iter()
                .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0"),
            "{ops:?}"
        );
        api.silence().await;
    });
    site_rec::reconcile(Arc::new(s), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_camera_status_is_written_once_and_not_again_when_unchanged() {
    let s = site("burgas", 4);
    let c = camera("gate-1", "burgas");
    let (ctx, mut api) = context(std::slice::from_ref(&s), std::slice::from_ref(&c));
    let camera_json = serde_json::to_value(&c).unwrap();
    let server = tokio::spawn(async move {
        let seen = api
            .expect(
                Method::PATCH,
                &format!("/apis/kordon.io/v1alpha1/namespaces/{NS}/cameras/gate-1/status"),
                with_status(camera_json),
            )
            .await;
        assert_ssa(&seen.query);
        let status: CameraStatus = serde_json::from_value(seen.body["status"].clone()).unwrap();
        let ordinal = crate::placement::replica_for("burgas", "gate-1", 4).unwrap();
        assert_eq!(status.replica, Some(format!("burgas-ingest-{ordinal}")));
        assert_eq!(seen.body["kind"], json!("Camera"));
        api.silence().await;
        api
    });
    camera_rec::reconcile(Arc::new(c.clone()), ctx.clone())
        .await
        .unwrap();
    let mut api = server.await.unwrap();

    // With that status in place, a second reconcile writes nothing.
    let mut written = c;
    written.status = Some(camera_rec::desired_status(
        &written,
        Some(&s),
        None,
        &crate::conditions::now(),
    ));
    camera_rec::reconcile(Arc::new(written), ctx).await.unwrap();
    api.silence().await;
}

#[tokio::test]
async fn a_failed_write_is_an_error_counted_by_kind() {
    let s = site("burgas", 1);
    let c = camera("gate-2", "burgas");
    let (ctx, mut api) = context(std::slice::from_ref(&s), std::slice::from_ref(&c));
    let server = tokio::spawn(async move {
        api.expect(
            Method::PATCH,
            &format!("/apis/kordon.io/v1alpha1/namespaces/{NS}/cameras/gate-2/status"),
            |_| {
                (
                    409,
                    json!({
                        "apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": "conflict", "reason": "Conflict", "code": 409,
                    }),
                )
            },
        )
        .await;
    });
    let c = Arc::new(c);
    let err = camera_rec::reconcile(c.clone(), ctx.clone())
        .await
        .unwrap_err();
    server.await.unwrap();
    assert_eq!(err.metric_label(), "conflict");
    let before = ctx
        .metrics
        .failures
        .with_label_values(&["camera", "conflict"])
        .get();
    let action = camera_rec::error_policy(c, &err, ctx.clone());
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(5)));
    assert_eq!(
        ctx.metrics
            .failures
            .with_label_values(&["camera", "conflict"])
            .get(),
        before + 1
    );
}

#[tokio::test]
async fn at_start_up_a_camera_waits_for_its_sites_ingest_status_instead_of_writing_twice() {
    let s = site("burgas", 2);
    let c = camera("gate-3", "burgas");
    let (ctx, mut api) = context(std::slice::from_ref(&s), std::slice::from_ref(&c));
    let mut ctx = Arc::into_inner(ctx).unwrap();
    ctx.started = std::time::Instant::now();
    let action = camera_rec::reconcile(Arc::new(c), Arc::new(ctx))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(1)));
    api.silence().await;
}
