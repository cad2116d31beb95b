//! Reconciler scenarios against a mocked apiserver: each API request is asserted in order
//! (kube-rs/controller-rs's `fixtures.rs` pattern), so these tests pin down exactly what the
//! operator asks of Kubernetes.

use std::sync::Arc;

use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::certificates::COMPONENTS;
use crate::crd::{CameraStatus, Site};
use crate::fixtures::ApiServerVerifier;
use crate::fixtures::{NS, camera, context, echo, list, not_found, site, with_status};
use crate::pki::{self, SiteCa};
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
        // No tlsSecret: the operator makes the site's CA, then a certificate per workload.
        let issued = expect_new_certificates(&mut api, "burgas").await;
        let cm = api
            .expect(
                Method::PATCH,
                &format!("{base}/configmaps/burgas-config"),
                echo,
            )
            .await;
        let site_yaml: serde_yaml::Value =
            serde_yaml::from_str(cm.body["data"]["site.yaml"].as_str().unwrap()).unwrap();
        assert_eq!(
            site_yaml["tls"]["client_ca_file"].as_str(),
            Some("/etc/kordon-tls/ca.crt")
        );
        assert_ssa(&cm.query);
        assert!(
            cm.body["data"]["site.yaml"]
                .as_str()
                .unwrap()
                .contains("kordon-burgas")
        );
        assert!(site_yaml.get("sites").is_none(), "no camera in a ConfigMap");
        for svc in ["ingest", "detection", "storage", "transcode", "alerting"] {
            let seen = api
                .expect(
                    Method::PATCH,
                    &format!("{base}/services/burgas-{svc}"),
                    echo,
                )
                .await;
            assert_ssa(&seen.query);
        }
        // Storage's, alerting's and (no database: jobs in SQLite) transcode's data claims:
        // retained, so without an owner.
        for claim in ["storage", "alerting", "transcode"] {
            let pvc = api
                .expect(
                    Method::PATCH,
                    &format!("{base}/persistentvolumeclaims/burgas-{claim}-data"),
                    echo,
                )
                .await;
            assert!(pvc.body["metadata"].get("ownerReferences").is_none());
        }
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
        assert_mounts_its_certificate(&sts.body, "ingest", &issued);
        let detection = api
            .expect(
                Method::PATCH,
                &format!("{apps}/statefulsets/burgas-detection"),
                echo,
            )
            .await;
        assert_ssa(&detection.query);
        assert_eq!(detection.body["spec"]["replicas"], json!(1));
        assert_eq!(
            detection.body["spec"]["serviceName"],
            json!("burgas-detection")
        );
        assert_mounts_its_certificate(&detection.body, "detection", &issued);
        for d in ["storage", "transcode", "alerting"] {
            let seen = api
                .expect(
                    Method::PATCH,
                    &format!("{apps}/deployments/burgas-{d}"),
                    echo,
                )
                .await;
            assert_mounts_its_certificate(&seen.body, d, &issued);
        }
        // The Deployment detection was before it was sharded, gone (here: never there).
        api.expect(
            Method::DELETE,
            &format!("{apps}/deployments/burgas-detection"),
            not_found,
        )
        .await;
        // The per-replica ingest ConfigMap of earlier versions, gone (here: never there).
        api.expect(
            Method::DELETE,
            &format!("{base}/configmaps/burgas-ingest"),
            not_found,
        )
        .await;
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
        // NoDetection answers nothing: shown, not hidden.
        assert_eq!(st["detection"]["replicas"], json!(1));
        assert_eq!(st["detection"]["reachableReplicas"], json!(0));
        let degraded = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Degraded")
            .unwrap();
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .contains("1 of 1 detection replicas unavailable (burgas-detection-0: Unavailable"),
            "{degraded}"
        );
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
        let tls = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "TLS")
            .unwrap();
        assert_eq!(tls["status"], json!("True"));
        assert_eq!(tls["reason"], json!("OperatorCA"));
        assert!(
            tls["message"].as_str().unwrap().contains("burgas-ca"),
            "{tls}"
        );
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
        // Certificate Secrets by name (never listed): the CA exists, the rest already went.
        api.expect(Method::DELETE, &format!("{base}/secrets/burgas-ca"), |_| {
            (
                200,
                json!({ "apiVersion": "v1", "kind": "Status", "status": "Success" }),
            )
        })
        .await;
        for c in COMPONENTS {
            api.expect(
                Method::DELETE,
                &format!("{base}/secrets/burgas-{c}-tls"),
                not_found,
            )
            .await;
        }
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
                .contains("deleted 2 objects")
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
        (api, status)
    });
    camera_rec::reconcile(Arc::new(c.clone()), ctx.clone())
        .await
        .unwrap();
    let (mut api, status) = server.await.unwrap();

    // With that status in place, a second reconcile writes nothing.
    let mut written = c;
    written.status = Some(status);
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

/// What the operator issued, by component: (certificate PEM, CA PEM).
type IssuedCerts = std::collections::BTreeMap<String, (String, String)>;

fn secret_data(body: &Value, key: &str) -> String {
    use base64::Engine;
    let b64 = body["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// The requests of a site with no CA yet: GET CA (404), create it, then per workload GET (404)
/// and server-side apply its certificate Secret.
async fn expect_new_certificates(api: &mut ApiServerVerifier, site: &str) -> IssuedCerts {
    let base = format!("/api/v1/namespaces/{NS}");
    api.expect(Method::GET, &format!("{base}/secrets/{site}-ca"), not_found)
        .await;
    let ca = api
        .expect(Method::POST, &format!("{base}/secrets"), echo)
        .await;
    assert_eq!(ca.body["metadata"]["name"], json!(format!("{site}-ca")));
    assert_eq!(
        ca.body["metadata"]["ownerReferences"][0]["kind"],
        json!("Site")
    );
    let ca_pem = secret_data(&ca.body, "ca.crt");
    let ca_key = secret_data(&ca.body, "ca.key");
    let ca_info = SiteCa::from_pem(&ca_pem, &ca_key).unwrap();
    assert!(ca_info.info().is_ca);

    let mut issued = IssuedCerts::new();
    for c in COMPONENTS {
        let name = format!("{site}-{c}-tls");
        api.expect(Method::GET, &format!("{base}/secrets/{name}"), not_found)
            .await;
        let seen = api
            .expect(Method::PATCH, &format!("{base}/secrets/{name}"), echo)
            .await;
        assert_ssa(&seen.query);
        assert_eq!(seen.body["type"], json!("kubernetes.io/tls"));
        let cert = secret_data(&seen.body, "tls.crt");
        assert_eq!(secret_data(&seen.body, "ca.crt"), ca_pem);
        assert!(
            !seen.body["data"]
                .as_object()
                .unwrap()
                .contains_key("ca.key"),
            "the CA key stays in the CA Secret"
        );
        let info = pki::inspect(&cert).unwrap();
        assert_eq!(
            info.identities.iter().map(|i| i.uri()).collect::<Vec<_>>(),
            [format!("spiffe://kordon.io/ns/{NS}/site/{site}/{c}")]
        );
        issued.insert(c.to_string(), (cert, ca_pem.clone()));
    }
    issued
}

/// The workload's pod template mounts its own certificate Secret, rolls with it, and does not
/// run the development identity.
fn assert_mounts_its_certificate(body: &Value, component: &str, issued: &IssuedCerts) {
    let template = &body["spec"]["template"];
    let text = template.to_string();
    assert!(!text.contains("KORDON_DEV_IDENTITY"), "{component}: {text}");
    let site = body["metadata"]["labels"]["kordon.io/site"]
        .as_str()
        .unwrap();
    let volume = template["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap_or_else(|| panic!("{component} mounts no certificate"));
    assert_eq!(
        volume["secret"]["secretName"],
        json!(format!("{site}-{component}-tls"))
    );
    let (cert, _) = &issued[component];
    assert_eq!(
        template["metadata"]["annotations"][crate::render::CERT_ANNOTATION],
        json!(pki::inspect(cert).unwrap().fingerprint)
    );
}

#[tokio::test]
async fn current_certificates_are_kept_and_a_due_foreign_or_short_named_one_is_reissued() {
    use std::time::{Duration, SystemTime};
    let s = finalized(site("yambol", 1));
    let (ctx, mut api) = context(std::slice::from_ref(&s), &[]);
    let now = SystemTime::now();
    let ca = SiteCa::generate(NS, "yambol", now).unwrap();
    let stranger = SiteCa::generate(NS, "yambol", now).unwrap();
    let b64 = |t: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(t)
    };
    let secret = |name: &str, data: Value| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name, "namespace": NS },
            "data": data,
        })
    };
    let cert_secret = move |ca: &SiteCa, c: &str, issued_at: SystemTime, names: &[String]| {
        let id = kordon_runtime::auth::ServiceIdentity::new(NS, "yambol", c).unwrap();
        let i = ca.issue(&id, names, issued_at).unwrap();
        secret(
            &format!("yambol-{c}-tls"),
            json!({ "tls.crt": b64(&i.cert_pem), "tls.key": b64(&i.key_pem), "ca.crt": b64(&i.ca_pem) }),
        )
    };
    let ca_secret = secret(
        "yambol-ca",
        json!({ "ca.crt": b64(ca.cert_pem()), "ca.key": b64(&ca.key_pem()) }),
    );
    let base = format!("/api/v1/namespaces/{NS}");
    let server = tokio::spawn(async move {
        api.expect(Method::GET, &format!("{base}/secrets/yambol-ca"), |_| {
            (200, ca_secret)
        })
        .await;
        for c in COMPONENTS {
            let path = format!("{base}/secrets/yambol-{c}-tls");
            let names = pki::dns_names(NS, "yambol", c);
            let existing = match c {
                // Signed by a CA this site does not trust (e.g. restored from elsewhere).
                "storage" => cert_secret(&stranger, c, now, &names),
                // Issued 25 of its 30 days ago: less than a third of its lifetime left.
                "detection" => cert_secret(&ca, c, now - Duration::from_secs(25 * 86_400), &names),
                // Issued before its server answered by replica name (`*.yambol-ingest...`).
                "ingest" => cert_secret(&ca, c, now, &names[..4]),
                _ => cert_secret(&ca, c, now, &names),
            };
            api.expect(Method::GET, &path, |_| (200, existing)).await;
            if c == "storage" || c == "detection" || c == "ingest" {
                let seen = api.expect(Method::PATCH, &path, echo).await;
                let cert = secret_data(&seen.body, "tls.crt");
                let info = pki::inspect(&cert).unwrap();
                assert!(!info.due(SystemTime::now()), "{c} renewed");
                assert_eq!(info.dns_names, names, "{c}");
                assert_eq!(secret_data(&seen.body, "ca.crt"), ca.cert_pem());
            }
        }
        // Then the workloads as usual; nothing else about certificates.
        api
    });
    let tls = crate::certificates::ensure(&ctx, &s, NS, "yambol")
        .await
        .unwrap();
    let mut api = server.await.unwrap();
    assert!(matches!(
        tls.source,
        crate::certificates::TlsSource::OperatorCa { .. }
    ));
    // The requeue is timed for the next renewal: about 20 days from now.
    let renew_in = tls.renew_in(now).unwrap();
    assert!(
        renew_in > Duration::from_secs(19 * 86_400) && renew_in < Duration::from_secs(21 * 86_400),
        "{renew_in:?}"
    );
    let client = tls.client.clone().unwrap();
    let client_cert = pki::inspect(std::str::from_utf8(&client.cert).unwrap()).unwrap();
    assert_eq!(
        client_cert.identities[0].uri(),
        format!("spiffe://kordon.io/ns/{NS}/site/yambol/operator")
    );

    // Checked a moment ago: the next reconcile asks the apiserver nothing.
    let again = crate::certificates::ensure(&ctx, &s, NS, "yambol")
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&tls, &again));
    api.silence().await;
}

#[tokio::test]
async fn a_user_tls_secret_wins_and_its_certificate_acts_for_its_own_site_only() {
    use std::time::SystemTime;
    let mut s = finalized(site("edirne", 1));
    s.spec.tls_secret = Some("edirne-mtls".into());
    let (ctx, mut api) = context(std::slice::from_ref(&s), &[]);
    // The user's PKI: a plain server/client certificate without a Kordon identity.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["kordon.edirne.svc".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let b64 = |t: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(t)
    };
    let user_secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "edirne-mtls", "namespace": NS },
        "type": "kubernetes.io/tls",
        "data": { "tls.crt": b64(&cert), "tls.key": b64(&key.serialize_pem()), "ca.crt": b64(&cert) },
    });
    let path = format!("/api/v1/namespaces/{NS}/secrets/edirne-mtls");
    let server = tokio::spawn(async move {
        // Read, never written: no CA, no issued certificate.
        api.expect(Method::GET, &path, |_| (200, user_secret)).await;
        api.silence().await;
        api
    });
    let tls = crate::certificates::ensure(&ctx, &s, NS, "edirne")
        .await
        .unwrap();
    let _ = server.await.unwrap();
    assert_eq!(
        tls.source,
        crate::certificates::TlsSource::SiteSecret {
            secret: "edirne-mtls".into(),
            problem: None
        }
    );
    assert!(
        tls.client.is_none(),
        "the operator holds no CA for this site"
    );
    assert!(tls.mounts.secrets.values().all(|v| v == "edirne-mtls"));
    assert_eq!(
        tls.mounts.subjects.get("kordon.edirne.svc"),
        Some(&vec!["edirne".to_string()])
    );
    assert_eq!(tls.renew_in(SystemTime::now()), None);

    // A missing Secret is said in the status, not hidden.
    let (ctx, mut api) = context(std::slice::from_ref(&s), &[]);
    let path = format!("/api/v1/namespaces/{NS}/secrets/edirne-mtls");
    let server = tokio::spawn(async move {
        api.expect(Method::GET, &path, not_found).await;
    });
    let tls = crate::certificates::ensure(&ctx, &s, NS, "edirne")
        .await
        .unwrap();
    server.await.unwrap();
    match &tls.source {
        crate::certificates::TlsSource::SiteSecret {
            problem: Some(p), ..
        } => assert!(p.contains("does not exist"), "{p}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_rule_without_its_site_says_so_and_one_with_its_site_is_left_to_the_site() {
    use crate::alert_rule;
    use crate::fixtures::{alert_rule as rule, context_with_rules};
    let orphan = rule("night", "edirne");
    let kept = rule("gate", "burgas");
    let (ctx, mut api) = context_with_rules(&[site("burgas", 1)], &[orphan.clone(), kept.clone()]);
    let reply = serde_json::to_value(&orphan).unwrap();
    let server = tokio::spawn(async move {
        let seen = api
            .expect(
                Method::PATCH,
                &format!("/apis/kordon.io/v1alpha1/namespaces/{NS}/alertrules/night/status"),
                with_status(reply),
            )
            .await;
        assert_ssa(&seen.query);
        let st = &seen.body["status"];
        assert_eq!(st["observedGeneration"], json!(1));
        for c in st["conditions"].as_array().unwrap() {
            assert_eq!(c["status"], json!("False"), "{c}");
            assert_eq!(c["reason"], json!("SiteNotFound"), "{c}");
        }
        // The rule whose Site exists: the Site reconciler writes its status, not this one.
        api.silence().await;
    });
    let action = alert_rule::reconcile(Arc::new(orphan), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(alert_rule::RECHECK));
    let action = alert_rule::reconcile(Arc::new(kept), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(alert_rule::RECHECK));
    server.await.unwrap();
}
