//! The `Site`, `Camera`, `AlertRule` and `Partner` custom resources (`kordon.io/v1alpha1`).
//!
//! What the apiserver guarantees before the operator sees an object, by the schema alone:
//! names and URLs are well-formed (a record URL is `rtsp://` or `rtsps://`), a camera and an
//! alert rule name a site (and cannot move to another), polygon and line points lie in the
//! normalised image (0..1), retention and durations are positive and bounded (a rule's
//! durations match [`DURATION_PATTERN`], its schedule's times are HH:MM), a rule watches zones
//! or lines but not both, and list sizes are bounded so CEL rules stay within the apiserver's
//! cost budget. The operator still checks what the schema cannot express (the referenced Site
//! exists, a rule's sinks are the Site's) and reports it in conditions.
//!
//! `kubectl get cameras`, `kubectl get sites` and `kubectl get alertrules` read like a
//! dashboard through the printer columns declared here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of Kordon's resources.
pub const GROUP: &str = "kordon.io";
/// The version served and stored.
pub const VERSION: &str = "v1alpha1";

/// A site: one partner district with its cameras, storage and ingest capacity.
///
/// The operator runs the site's services (ingest and detection as StatefulSets, transcode,
/// storage and alerting as Deployments) and spreads the site's cameras over the ingest
/// replicas, and independently over the detection replicas. `kubectl scale site/<name> --replicas=N` changes the number of ingest replicas.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kordon.io",
    version = "v1alpha1",
    kind = "Site",
    namespaced,
    status = "SiteStatus",
    derive = "PartialEq",
    category = "kordon",
    validation = Rule::new("self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a Site's name must be a DNS label of at most 40 characters (it prefixes its workloads' names)"),
    doc = "A Kordon site: a partner district, its storage, ingest capacity and sharing agreements.",
    scale(
        spec_replicas_path = ".spec.ingest.replicas",
        status_replicas_path = ".status.ingest.replicas",
        label_selector_path = ".status.ingest.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.ingest.replicas",
        description = "Ingest replicas wanted"
    ),
    printcolumn(
        name = "Cameras",
        type_ = "integer",
        json_path = ".status.cameras.total",
        description = "Cameras of the site"
    ),
    printcolumn(
        name = "Recording",
        type_ = "integer",
        json_path = ".status.cameras.recording",
        description = "Cameras recording now"
    ),
    printcolumn(
        name = "Offline",
        type_ = "integer",
        json_path = ".status.cameras.offline",
        description = "Cameras whose stream is broken"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SiteSpec {
    /// Human-readable name, e.g. "Burgas Regional Directorate".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. "BG" or "TR".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country: Option<String>,
    /// IANA time zone of the site, e.g. "Europe/Sofia".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: Option<String>,
    /// Where the site's footage is stored.
    pub storage: SiteStorage,
    /// The PostgreSQL database of storage's index, alerting's alerts and transcode's jobs
    /// (each in tables of its own); unset means an embedded SQLite file per service, on its
    /// retained claim (one replica each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseRef>,
    /// Ingest capacity; `replicas` is the scale subresource.
    #[serde(default)]
    pub ingest: IngestSpec,
    #[serde(default)]
    pub detection: DetectionSettings,
    /// Renditions, timeline thumbnails and the viewer copies of evidence bundles.
    #[serde(default)]
    pub transcode: TranscodeSettings,
    /// Where alerts are delivered besides the gRPC stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub alert_sinks: Vec<AlertSink>,
    /// What partner sites may see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub sharing: Vec<SharingAgreement>,
    /// A Secret of type kubernetes.io/tls (with `ca.crt`) the site's services use for mTLS
    /// among themselves instead of certificates from the operator's own CA for the site; unset
    /// means the operator issues each workload its own certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret: Option<String>,
    /// The partner link (port 8473 of the alerting and storage Services) as partner
    /// installations reach it; required before any `Partner` of this Site is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_link: Option<PartnerLinkSpec>,
    /// How people (officers, auditors, administrators) sign in to the site's services: bearer
    /// tokens of the site's identity provider. Unset means only certificates the site's CA
    /// issued reach them (services, the operator, an administrator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SiteAuth>,
}

/// How people authenticate to a site's services.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SiteAuth {
    /// Bearer JWTs from the site's identity provider (OIDC access tokens): each call's token
    /// must be signed by one of `keys` and carry `issuer`, `audience` and the person's roles
    /// per site in `rolesClaim`.
    pub jwt: PersonTokens,
}

/// Bearer JWTs people present (rendered as `auth.jwt` of the site's configuration).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.keys) <= 1 || self.keys.all(k, has(k.id))").message("auth.jwt.keys: with several keys each needs an `id` (the tokens' `kid`)"))]
pub struct PersonTokens {
    /// The `iss` every token carries, e.g. `https://sso.burgas.example/realms/police`.
    #[schemars(length(min = 1, max = 512))]
    pub issuer: String,
    /// The `aud` every token carries, e.g. `kordon`.
    #[schemars(length(min = 1, max = 256))]
    pub audience: String,
    /// The public keys that may sign tokens (PEM, from ConfigMaps of this namespace: public
    /// keys need no Secret). Add the new key before the provider rotates to it.
    #[schemars(length(min = 1, max = 8))]
    pub keys: Vec<TokenKey>,
    /// The claim holding `{"<site>" | "*": ["viewer" | "operator" | "auditor" | "admin"]}`;
    /// unset means `kordon_roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub roles_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds; unset means 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 300))]
    pub leeway_seconds: Option<u32>,
}

/// One public key that signs people's tokens, from a ConfigMap of the Site's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenKey {
    /// The `kid` of the tokens it signs; required when there are several keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub id: Option<String>,
    pub algorithm: TokenAlgorithm,
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: String,
    /// The key holding the PEM public key.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_token_key() -> String {
    "public.pem".to_string()
}

/// How a token is signed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAlgorithm {
    EdDSA,
    RS256,
    ES256,
}

/// How partner installations reach this site's partner link.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PartnerLinkSpec {
    /// The DNS names partners dial (e.g. `partner.kordon.burgas.example`, routed to port 8473
    /// of `<site>-alerting` and `<site>-storage`): the partner-link certificate names them.
    #[schemars(
        length(min = 1, max = 16),
        inner(
            length(max = 253),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        )
    )]
    pub hostnames: Vec<String>,
}

/// Object storage of a site.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.objectLock || has(self.retentionDays)").message("storage.objectLock needs storage.retentionDays (the lock's retention)"))]
pub struct SiteStorage {
    /// Bucket name (S3 rules: 3-63 characters of a-z, 0-9, '.', '-').
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// S3 endpoint URL; unset means AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("storage.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// Secret with `accessKeyId` and `secretAccessKey`; unset means the pod's ambient
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
    /// Days footage is kept unless a camera overrides it or a legal hold stops deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 36500").message("retentionDays must be positive (1 to 36500 days)"))]
    pub retention_days: Option<i32>,
    /// Write every object with an S3 Object Lock (WORM) retention of `retentionDays`.
    #[serde(default)]
    pub object_lock: bool,
}

/// Reference to the index database's connection URL.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRef {
    /// Secret holding the PostgreSQL URL.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the URL in the Secret.
    #[serde(default = "default_database_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_database_key() -> String {
    "url".to_string()
}

/// The default number of ingest replicas.
pub const DEFAULT_INGEST_REPLICAS: i32 = 1;

/// Ingest capacity of a site.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestSpec {
    /// Ingest replicas (the scale subresource). 0 stops recording.
    #[serde(default = "default_ingest_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("ingest.replicas must be between 0 and 1000"))]
    pub replicas: i32,
    /// Planned cameras per replica; the site reports Degraded when replicas hold more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("ingest.camerasPerReplica must be positive"))]
    pub cameras_per_replica: Option<i32>,
    /// Default segment length in seconds (1 to 60); cameras may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 60").message("ingest.segmentSeconds must be between 1 and 60"))]
    pub segment_seconds: Option<i32>,
}

fn default_ingest_replicas() -> i32 {
    DEFAULT_INGEST_REPLICAS
}

impl Default for IngestSpec {
    fn default() -> Self {
        Self {
            replicas: DEFAULT_INGEST_REPLICAS,
            cameras_per_replica: None,
            segment_seconds: None,
        }
    }
}

/// Detection of a site: a StatefulSet whose replicas each analyse a shard of the cameras.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DetectionSettings {
    /// Detection replicas (0 turns detection off for the site). Cameras are spread over them
    /// like over ingest's, independently of which ingest replica records them.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("detection.replicas must be between 0 and 100"))]
    pub replicas: i32,
    /// Frames analysed per second per camera, unless the camera sets its own; unset means
    /// detection's default (5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 15.0").message("detection.framesPerSecond must be in (0, 15]"))]
    pub frames_per_second: Option<f64>,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            frames_per_second: None,
        }
    }
}

/// The default number of transcode replicas.
pub const DEFAULT_TRANSCODE_REPLICAS: i32 = 1;
/// Jobs one transcode replica runs at once by default.
pub const DEFAULT_TRANSCODE_WORKERS: u32 = 1;
/// The encoder by default: a hardware one the node has, else software.
pub const DEFAULT_TRANSCODE_ENCODER: &str = "auto";
/// Width of automatic thumbnails by default, in pixels.
pub const DEFAULT_THUMBNAIL_WIDTH: u32 = 320;
/// How often automatic thumbnails look for new segments by default.
pub const DEFAULT_THUMBNAIL_POLL: &str = "30s";

/// The transcode service of a site: renditions, thumbnails and the viewer copies of evidence
/// bundles, as resumable jobs. Its jobs live in the Site's `database` when it has one, else in
/// SQLite on the retained claim `<site>-transcode-data`, which one replica at a time may write:
/// without a database at most one replica runs (the Site's `Transcode` condition says when
/// fewer run than asked).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TranscodeSettings {
    /// Transcode replicas (0 turns transcode off; more than 1 needs `spec.database`).
    #[serde(default = "default_transcode_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("transcode.replicas must be between 0 and 100"))]
    pub replicas: i32,
    /// Deprecated and ignored: superseded by `encoder` (`software` never uses a hardware
    /// encoder). Kept so that stored Sites lose nothing.
    #[serde(default)]
    pub hardware_encoders: bool,
    /// Jobs each replica runs at once (1 to 64); each job encodes on one thread.
    #[serde(default = "default_transcode_workers")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64").message("transcode.workers must be between 1 and 64"))]
    pub workers: u32,
    /// `auto` (a hardware encoder the node has, else software), `software` (the same bytes on
    /// every machine), or one GStreamer element by name, e.g. `vah264enc`.
    #[serde(default = "default_transcode_encoder")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.matches('^[A-Za-z0-9_]+$')").message("transcode.encoder must be auto, software or a GStreamer element name (letters, digits, '_'), e.g. vah264enc"))]
    pub encoder: String,
    /// Thumbnails for the timeline, made for every new segment as it is recorded.
    #[serde(default)]
    pub thumbnails: ThumbnailSettings,
}

impl Default for TranscodeSettings {
    fn default() -> Self {
        Self {
            replicas: DEFAULT_TRANSCODE_REPLICAS,
            hardware_encoders: false,
            workers: DEFAULT_TRANSCODE_WORKERS,
            encoder: DEFAULT_TRANSCODE_ENCODER.to_string(),
            thumbnails: ThumbnailSettings::default(),
        }
    }
}

fn default_transcode_replicas() -> i32 {
    DEFAULT_TRANSCODE_REPLICAS
}

fn default_transcode_workers() -> u32 {
    DEFAULT_TRANSCODE_WORKERS
}

fn default_transcode_encoder() -> String {
    DEFAULT_TRANSCODE_ENCODER.to_string()
}

/// Automatic thumbnails of a site's new segments.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThumbnailSettings {
    /// Make a thumbnail of every new segment (each poll is one logged footage read per camera).
    #[serde(default)]
    pub automatic: bool,
    /// JPEG width in pixels (16 to 3840); the height follows the aspect ratio.
    #[serde(default = "default_thumbnail_width")]
    #[x_kube(validation = Rule::new("self >= 16 && self <= 3840").message("transcode.thumbnails.width must be between 16 and 3840"))]
    pub width: u32,
    /// How often storage is asked for new segments, e.g. `30s` (1s to 1h).
    #[serde(default = "default_thumbnail_poll")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("transcode.thumbnails.poll must be between 1s and 1h"))]
    pub poll: String,
}

impl Default for ThumbnailSettings {
    fn default() -> Self {
        Self {
            automatic: false,
            width: DEFAULT_THUMBNAIL_WIDTH,
            poll: DEFAULT_THUMBNAIL_POLL.to_string(),
        }
    }
}

fn default_thumbnail_width() -> u32 {
    DEFAULT_THUMBNAIL_WIDTH
}

fn default_thumbnail_poll() -> String {
    DEFAULT_THUMBNAIL_POLL.to_string()
}

fn one() -> i32 {
    1
}

/// An alert destination.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.webhook) != has(self.mqtt)").message("an alert sink is exactly one of webhook or mqtt"))]
pub struct AlertSink {
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttSink>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.signingSecret)").message("webhook.signingSecret must name a Secret whose `key` holds the whsec_ signing secret: deliveries are always signed (Standard Webhooks)"))]
pub struct WebhookSink {
    #[schemars(length(max = 2048))]
    // `https://` only: alerting refuses plain HTTP to anything but its own loopback, which in
    // a pod is no receiver (the pods would crash-loop on the rendered config).
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("webhook.url must be an https:// URL (alerting sends alert details only over TLS)"))]
    pub url: String,
    /// Secret whose `key` holds the `whsec_…` secret that signs deliveries (Standard
    /// Webhooks); required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub signing_secret: Option<String>,
    /// The CA that signs the receiver's certificate (PEM, from a ConfigMap of this namespace,
    /// key `ca.crt` unless named): the receiver is then trusted by it alone, not by public
    /// roots. Unset: the receiver needs a certificate from a public CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PartnerCaRef>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MqttSink {
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('mqtt://') || self.startsWith('mqtts://')").message("mqtt.url must be an mqtt:// or mqtts:// URL"))]
    pub url: String,
    #[schemars(length(min = 1, max = 256))]
    pub topic: String,
}

/// What one partner site may see of this site.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SharingAgreement {
    /// The partner Site's name.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$"))]
    pub site: String,
    /// The partner's namespace; unset means this Site's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Forward alerts to the partner.
    #[serde(default)]
    pub alerts: bool,
    #[serde(default)]
    pub footage: FootageSharing,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FootageSharing {
    #[default]
    None,
    OnRequest,
    Live,
}

/// What the operator last saw of a site.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    /// Ready, Progressing, Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub ingest: SiteIngestStatus,
    #[serde(default)]
    pub detection: SiteDetectionStatus,
    #[serde(default)]
    pub cameras: CameraCounts,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SiteDetectionStatus {
    /// Detection replicas wanted (`spec.detection.replicas`).
    #[serde(default)]
    pub replicas: i32,
    /// Replicas that answered over gRPC and hold their shard of cameras.
    #[serde(default)]
    pub reachable_replicas: i32,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SiteIngestStatus {
    /// Ingest replicas the StatefulSet has (the scale subresource's status).
    #[serde(default)]
    pub replicas: i32,
    /// Replicas whose status the operator could read over gRPC.
    #[serde(default)]
    pub reachable_replicas: i32,
    /// Label selector of the ingest pods (the scale subresource's selector, for HPAs).
    #[serde(default)]
    pub selector: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CameraCounts {
    pub total: i32,
    /// Cameras the operator has placed on a replica.
    pub assigned: i32,
    /// Cameras their replica reports recording.
    pub recording: i32,
    /// Cameras their replica reports reconnecting or offline.
    pub offline: i32,
    /// Cameras whose replica could not be asked.
    pub unknown: i32,
}

/// A camera of a site: its streams, how it is recorded and analysed, and where it is.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kordon.io",
    version = "v1alpha1",
    kind = "Camera",
    namespaced,
    status = "CameraStatus",
    derive = "PartialEq",
    shortname = "cam",
    category = "kordon",
    selectable = ".spec.site",
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a Camera's name must be a DNS label (a-z, 0-9, '-'; at most 63 characters)"),
    doc = "A Kordon camera: its streams, recording and detection settings, and the site it belongs to.",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site"),
    printcolumn(
        name = "Replica",
        type_ = "string",
        json_path = ".status.replica",
        description = "Ingest replica recording the camera"
    ),
    printcolumn(name = "Codec", type_ = "string", json_path = ".status.codec"),
    printcolumn(name = "Resolution", type_ = "string", json_path = ".status.resolution"),
    printcolumn(name = "FPS", type_ = "number", json_path = ".status.fps"),
    printcolumn(
        name = "Recording",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Recording\")].status"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Last segment", type_ = "date", json_path = ".status.lastSegment"),
    printcolumn(
        name = "Detecting",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Detecting\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Transport",
        type_ = "string",
        json_path = ".status.transport",
        priority = 1
    ),
    printcolumn(
        name = "Error",
        type_ = "string",
        json_path = ".status.lastError",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CameraSpec {
    /// The Site (in this namespace) the camera belongs to. Cannot change.
    #[schemars(length(max = 63))]
    #[x_kube(
        validation = Rule::new("self != ''").message("spec.site is required: name the Site this camera belongs to"),
        validation = Rule::new("self == oldSelf").message("spec.site cannot change: create a new Camera for another site")
    )]
    pub site: String,
    pub streams: Streams,
    /// Secret with the RTSP user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsRef>,
    #[serde(default)]
    pub recording: Recording,
    /// Overrides the site's retention, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 36500").message("retentionDays must be positive (1 to 36500 days)"))]
    pub retention_days: Option<i32>,
    #[serde(default)]
    pub detection: CameraDetection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// The camera's RTSP streams.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Streams {
    /// The recorded (main) stream, `rtsp://` or `rtsps://`, without credentials.
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = Rule::new("self.startsWith('rtsp://') || self.startsWith('rtsps://')").message("streams.record must be an rtsp:// or rtsps:// URL"),
        validation = Rule::new("!self.matches('^rtsps?://[^/]*@')").message("streams.record must not carry credentials: use spec.credentials")
    )]
    pub record: String,
    /// The lower-resolution stream detection analyses; unset means the record stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = Rule::new("self.startsWith('rtsp://') || self.startsWith('rtsps://')").message("streams.detect must be an rtsp:// or rtsps:// URL"),
        validation = Rule::new("!self.matches('^rtsps?://[^/]*@')").message("streams.detect must not carry credentials: use spec.credentials")
    )]
    pub detect: Option<String>,
    #[serde(default)]
    pub transport: RtspTransport,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    #[serde(default)]
    pub mode: RecordingMode,
    /// Seconds kept before an event (events mode), at most 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 300").message("recording.preRollSeconds must be between 0 and 300"))]
    pub pre_roll_seconds: Option<i32>,
    /// Seconds kept after an event (events mode), at most 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 300").message("recording.postRollSeconds must be between 0 and 300"))]
    pub post_roll_seconds: Option<i32>,
    /// Segment length in seconds (1 to 60); unset means the site's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 60").message("recording.segmentSeconds must be between 1 and 60"))]
    pub segment_seconds: Option<i32>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecordingMode {
    /// Every segment is stored.
    #[default]
    Continuous,
    /// Only segments around detection events are stored.
    Events,
}

/// How a camera is analysed by its detection replica (the site's `detection.replicas` > 0).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CameraDetection {
    /// False: the detect stream is not pulled and nothing is detected on this camera.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Object classes to report, from the model's labels (e.g. person, bicycle, car,
    /// motorcycle, bus, truck); empty means those six.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(c, size(c) >= 1 && size(c) <= 64)").message("detection.classes are model labels of 1 to 64 characters"))]
    pub classes: Vec<String>,
    /// Minimum detector confidence, 0..1; unset means 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("detection.minConfidence must be within 0..1"))]
    pub min_confidence: Option<f64>,
    /// Frames analysed per second; unset means the site's `detection.framesPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 15.0").message("detection.framesPerSecond must be in (0, 15]"))]
    pub frames_per_second: Option<f64>,
    /// Motion gating: the object detector runs only on frames with motion.
    #[serde(default)]
    pub motion: MotionGate,
    /// Areas where presence matters; alert rules name them (empty: the whole image). Names
    /// are unique per camera (a list map keyed by name: the apiserver refuses duplicates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub zones: Vec<Zone>,
    /// Areas never analysed (privacy masks): no motion counted there, and objects whose
    /// bottom centre lies inside are not reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub masks: Vec<Zone>,
    /// Lines whose crossing raises events. Names are unique per camera (a list map keyed by
    /// name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub lines: Vec<Line>,
    /// Per class filters (at most one per class: a list map keyed by class); a class without
    /// one keeps only `minConfidence`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["class"]))]
    pub filters: Vec<ClassFilter>,
}

/// Filters for one object class; unset fields keep their defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minArea) || !has(self.maxArea) || self.minArea <= self.maxArea").message("detection.filters: maxArea must not be below minArea"))]
#[x_kube(validation = Rule::new("!has(self.minRatio) || !has(self.maxRatio) || self.minRatio <= self.maxRatio").message("detection.filters: maxRatio must not be below minRatio"))]
pub struct ClassFilter {
    /// The class these apply to: one of `classes` (or of the six defaults).
    #[schemars(length(min = 1, max = 64))]
    pub class: String,
    /// Detections of this class below this confidence (0..1) are dropped; unset means
    /// `minConfidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("detection.filters.minScore must be within 0..1"))]
    pub min_score: Option<f64>,
    /// A track is reported only once the median of its last 10 scores reaches this (0..1);
    /// unset means `minScore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("detection.filters.threshold must be within 0..1"))]
    pub threshold: Option<f64>,
    /// Smallest box, as a fraction (0..1) of the frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("detection.filters.minArea must be within 0..1"))]
    pub min_area: Option<f64>,
    /// Largest box, as a fraction (0..1] of the frame; unset means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("detection.filters.maxArea must be in (0, 1]"))]
    pub max_area: Option<f64>,
    /// Narrowest box, width over height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("detection.filters.minRatio must be 0 or more"))]
    pub min_ratio: Option<f64>,
    /// Widest box, width over height in pixels (e.g. 1 keeps a standing person); unset means
    /// no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("detection.filters.maxRatio must be above 0"))]
    pub max_ratio: Option<f64>,
}

impl Default for CameraDetection {
    fn default() -> Self {
        Self {
            enabled: true,
            classes: Vec::new(),
            min_confidence: None,
            frames_per_second: None,
            motion: MotionGate::default(),
            zones: Vec::new(),
            masks: Vec::new(),
            lines: Vec::new(),
            filters: Vec::new(),
        }
    }
}

/// Motion gating of one camera.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MotionGate {
    /// False: run the object detector on every analysed frame.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fraction (0..1] of the frame, outside masks, that must change to count as motion;
    /// unset means 0.002.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("detection.motion.threshold must be in (0, 1]"))]
    pub threshold: Option<f64>,
    /// Seconds the detector keeps running after motion stops, so still objects stay tracked;
    /// unset means 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 600.0").message("detection.motion.holdSeconds must be within 0..600"))]
    pub hold_seconds: Option<f64>,
}

impl Default for MotionGate {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: None,
            hold_seconds: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// A point in normalised image coordinates, `[x, y]`: `[0, 0]` top left, `[1, 1]` bottom right.
/// (A pair, not `{x, y}`: YAML 1.1 readers such as kubectl take a bare `y:` key for `true`.)
pub type Point = [f64; 2];

/// A named polygon in normalised image coordinates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.points.all(p, p[0] >= 0.0 && p[0] <= 1.0 && p[1] >= 0.0 && p[1] <= 1.0)").message("polygon points are normalised image coordinates [x, y]: both must be within 0..1"))]
pub struct Zone {
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// At least 3 points `[x, y]`.
    #[schemars(length(min = 3, max = 64))]
    pub points: Vec<Point>,
}

/// A named line (tripwire) in normalised image coordinates: a tracked object crosses it when
/// its bottom centre moves from one side of `from`-`to` to the other.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from.all(v, v >= 0.0 && v <= 1.0) && self.to.all(v, v >= 0.0 && v <= 1.0)").message("line ends are normalised image coordinates [x, y]: both must be within 0..1"))]
#[x_kube(validation = Rule::new("self.from != self.to").message("a line's from and to must differ"))]
pub struct Line {
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    pub from: Point,
    pub to: Point,
    /// Which crossings are reported; unset means both.
    #[serde(default)]
    pub direction: LineDirection,
}

/// Which way across a line counts. Left and right are as seen standing on `from` and facing
/// `to` in the image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum LineDirection {
    #[default]
    Both,
    LeftToRight,
    RightToLeft,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    #[x_kube(validation = Rule::new("self >= -90.0 && self <= 90.0").message("location.latitude must be within -90..90"))]
    pub latitude: f64,
    #[x_kube(validation = Rule::new("self >= -180.0 && self <= 180.0").message("location.longitude must be within -180..180"))]
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
}

/// What the operator and the camera's ingest replica last reported.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CameraStatus {
    /// Ready, Recording, and Stored once the replica reported (False when storage refused
    /// footage for good and the replica kept it in its dead-letter folder); Detecting while the
    /// site runs detection.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The ingest replica (pod name) the camera is placed on, e.g. `burgas-ingest-2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// The replica's ordinal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<i32>,
    /// Starting, Recording, Reconnecting, Offline, Stopped; unset while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// H264 or H265.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// WIDTHxHEIGHT in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_bps: Option<i64>,
    /// End of the last segment stored or spooled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment: Option<Time>,
    /// Why the stream is broken, as the replica reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<Time>,
    /// The RTSP client recording it: `retina`, or `gstreamer` (for `rtsps://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The RTP transport in use, TCP or UDP (UDP also when the camera refused TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Segments or gaps storage refused for good, kept in the replica's dead-letter folder
    /// (see the `Stored` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<i64>,
    /// Where and how the camera is analysed (see the `Detecting` condition); unset when the
    /// site runs no detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<CameraDetectionStatus>,
}

/// What the camera's detection replica last reported.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CameraDetectionStatus {
    /// The detection replica (pod name) the camera is placed on, e.g. `burgas-detection-1`.
    pub replica: String,
    /// Starting, Running, Reconnecting, Offline, Disabled; unset while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The object detector, e.g. `nanodet-m-416`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where inference runs, e.g. `cpu` or `cuda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// The pattern of a duration in rules: whole numbers of ms, s, m or h, e.g. `40s`, `1m30s`
/// (what the alerting service reads with humantime).
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// An alert rule: which detections of a site raise an alert, when, how loud, and where it is
/// delivered. The operator renders every accepted rule of a Site into the `alerting` section of
/// the site's configuration; the alerting service evaluates them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kordon.io",
    version = "v1alpha1",
    kind = "AlertRule",
    namespaced,
    status = "AlertRuleStatus",
    derive = "PartialEq",
    shortname = "ar",
    category = "kordon",
    selectable = ".spec.site",
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("an AlertRule's name must be a DNS label (a-z, 0-9, '-'; at most 63 characters)"),
    doc = "A Kordon alert rule: which detections of a site raise an alert, when, and where it goes.",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site"),
    printcolumn(name = "Severity", type_ = "string", json_path = ".spec.severity"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Disabled",
        type_ = "boolean",
        json_path = ".spec.disabled",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.zone) || !has(self.line)").message("an alert rule watches zones or lines, not both: set zone or line"))]
pub struct AlertRuleSpec {
    /// The Site (in this namespace) whose detections the rule watches. Cannot change.
    #[schemars(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.site cannot change: create a new AlertRule for another site"))]
    pub site: String,
    /// What the rule is for, shown with its alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// True: the rule is kept but raises nothing.
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub severity: Severity,
    /// Camera names of the site; empty means every camera of the site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub cameras: Vec<String>,
    /// Object classes (model labels, e.g. person, car); empty means any class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 64)))]
    pub classes: Vec<String>,
    /// Detections below this confidence (0..1) are ignored; unset means the detector's own
    /// threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("minConfidence must be within 0..1"))]
    pub min_confidence: Option<f64>,
    /// Only objects inside these zones count (not with `line`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneTrigger>,
    /// Only objects crossing these lines count (not with `zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineTrigger>,
    /// Raise only when at least this many matching objects are seen together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("minObjects must be between 1 and 1000"))]
    pub min_objects: Option<i32>,
    /// When the rule is active; unset means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// What counts as the same alert (which is not raised again while it is open).
    #[serde(default)]
    pub dedup: Dedup,
    /// How long a matching condition must last before the alert is raised, e.g. `40s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub quiet_period: Option<String>,
    /// How long after an alert the same alert is not raised again, e.g. `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub cooldown: Option<String>,
    /// An alert nobody acknowledged within this is escalated, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub escalate_after: Option<String>,
    /// Names of the Site's `spec.alertSinks` to deliver to; empty means every sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub sinks: Vec<String>,
}

/// How loud an alert is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

/// What makes two alerts of a rule the same one.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dedup {
    /// One open alert per camera.
    #[default]
    Camera,
    /// One per camera and zone (or line).
    Zone,
    /// One per tracked object.
    Track,
}

/// Presence in zones of the cameras (`spec.detection.zones`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneTrigger {
    /// Zone names; an object inside any of them counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(max = 63),
            regex(pattern = r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$")
        )
    )]
    pub zones: Vec<String>,
    /// How long an object must stay inside before it counts, e.g. `5s`; unset means at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub min_dwell: Option<String>,
}

/// Crossings of lines of the cameras (`spec.detection.lines`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LineTrigger {
    /// Line names; a crossing of any of them counts.
    #[schemars(
        length(min = 1, max = 32),
        inner(
            length(max = 63),
            regex(pattern = r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$")
        )
    )]
    pub lines: Vec<String>,
    #[serde(default)]
    pub direction: CrossingDirection,
}

/// Which crossings of a line count; left and right as for the camera's line (standing on
/// `from`, facing `to`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CrossingDirection {
    #[default]
    Any,
    LeftToRight,
    RightToLeft,
}

/// When a rule is active: any of its windows, in its time zone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// IANA time zone, e.g. "Europe/Sofia"; unset means the Site's `spec.timeZone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: Option<String>,
    #[schemars(length(min = 1, max = 32))]
    pub windows: Vec<TimeWindow>,
}

/// A daily window, `start` to `end` local time; a window whose end is before its start runs
/// past midnight into the next day (e.g. 22:00 to 06:00).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start != self.end").message("schedule.windows: start and end must differ"))]
pub struct TimeWindow {
    /// The days the window starts on; empty means every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
    /// HH:MM, 24-hour.
    #[schemars(length(max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("schedule.windows.start must be HH:MM (00:00 to 23:59)"))]
    pub start: String,
    /// HH:MM, 24-hour.
    #[schemars(length(max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("schedule.windows.end must be HH:MM (00:00 to 23:59)"))]
    pub end: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// What the operator last saw of a rule.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AlertRuleStatus {
    /// Accepted (the Site and every named sink exist) and Ready (rendered into the Site's
    /// configuration); False with reason SiteNotFound, SiteDeleting or UnknownSink.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The pattern of a partner agreement's durations: whole numbers of s, m, h or d, e.g. `1h`,
/// `30d` (what the services read with humantime).
pub const AGREEMENT_DURATION_PATTERN: &str = r"^([0-9]+(s|m|h|d))+$";

/// A partner installation of a Site and the agreement with it: a site of another Kordon
/// installation (its own cluster, CA and keys), what this Site shares with it and what it
/// expects from it. The operator renders every accepted Partner of a Site into the `partners`
/// section of the site's configuration; the site's alerting service checks with the partner
/// that both declared the same agreement, and the Partner's status shows what it found.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kordon.io",
    version = "v1alpha1",
    kind = "Partner",
    namespaced,
    status = "PartnerStatus",
    derive = "PartialEq",
    shortname = "pt",
    category = "kordon",
    selectable = ".spec.site",
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a Partner's name must be a DNS label (a-z, 0-9, '-'; at most 63 characters)"),
    doc = "A Kordon partner: another installation's site, and what this site shares with it and receives from it.",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site"),
    printcolumn(name = "Partner", type_ = "string", json_path = ".spec.partnerSite"),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Bilateral acceptance as the site's alerting last saw it"
    ),
    printcolumn(name = "Last Contact", type_ = "date", json_path = ".status.lastContact"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.stateReason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.site != self.partnerSite").message("spec.partnerSite must differ from spec.site: a site is not its own partner"))]
pub struct PartnerSpec {
    /// The local Site (in this namespace) the agreement belongs to. Cannot change.
    #[schemars(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.site cannot change: create a new Partner for another site"))]
    pub site: String,
    /// The partner's site as its installation names it (its `partners.site`), e.g. `edirne`.
    #[schemars(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub partner_site: String,
    /// Human-readable name, e.g. "Edirne İl Emniyet Müdürlüğü".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,
    /// The partner's link, `https://host:port` (its alerting; its storage too unless
    /// `storageEndpoint` is set).
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https://[^/@]+(:[0-9]+)?/?$')").message("endpoint must be an https://host[:port] URL: the partner link is mTLS only"))]
    pub endpoint: String,
    /// The partner's storage link for footage requests, when not served at `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https://[^/@]+(:[0-9]+)?/?$')").message("storageEndpoint must be an https://host[:port] URL: the partner link is mTLS only"))]
    pub storage_endpoint: Option<String>,
    /// The CA that signs the partner's service certificates (PEM), from a ConfigMap of this
    /// namespace: only certificates it signed are the partner.
    pub ca: PartnerCaRef,
    /// The partner's Ed25519 evidence-signing public key, 64 hex digits: bundles it sends are
    /// verified with it and nothing else.
    #[schemars(length(min = 64, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{64}$')").message("evidencePublicKey must be 64 hex digits (an Ed25519 public key)"))]
    pub evidence_public_key: String,
    /// What this site shares with the partner.
    #[serde(default)]
    pub shares: PartnerTerms,
    /// What this site expects the partner to share with it (the partner's `shares`).
    #[serde(default)]
    pub receives: PartnerTerms,
}

/// A CA certificate in a ConfigMap (CA certificates are public: no Secret needed).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartnerCaRef {
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: String,
    /// The key holding the PEM certificate(s).
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_string()
}

/// What one side shares with the other. Both sides must declare the same terms each way
/// (this site's `shares` is the partner's `receives` and the other way round) before anything
/// flows.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.alerts) && self.alerts) || (!has(self.minSeverity) && (!has(self.rules) || size(self.rules) == 0) && (!has(self.snapshots) || !self.snapshots))").message("minSeverity, rules and snapshots narrow alert sharing: set alerts: true, or leave them out"))]
pub struct PartnerTerms {
    /// Forward alerts at all.
    #[serde(default)]
    pub alerts: bool,
    /// Only alerts of this severity or higher; unset means every severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Only alerts of these rules (by name); empty means every rule.
    #[serde(default)]
    #[schemars(
        length(max = 256),
        inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub rules: Vec<String>,
    /// Only alerts and footage of these cameras of the sharing site; empty means every camera.
    #[serde(default)]
    #[schemars(
        length(max = 256),
        inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub cameras: Vec<String>,
    /// Forwarded alerts keep their snapshot.
    #[serde(default)]
    pub snapshots: bool,
    #[serde(default)]
    pub footage: PartnerFootageTerms,
}

/// Footage requests under an agreement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PartnerFootageTerms {
    /// The receiving side may request footage.
    #[serde(default)]
    pub requests: bool,
    /// The longest range one request may cover, e.g. `1h`; unset means 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = AGREEMENT_DURATION_PATTERN))]
    pub max_range: Option<String>,
    /// In which form footage leaves: `original`, or `masked` (privacy-masked by transcode).
    #[serde(default)]
    pub form: FootageFormSpec,
    /// How long the receiving side may keep footage, e.g. `30d`; unset means 30d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = AGREEMENT_DURATION_PATTERN))]
    pub keep_for: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FootageFormSpec {
    #[default]
    Original,
    Masked,
}

/// What the operator and the site's alerting last reported of a partner.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PartnerStatus {
    /// Accepted (rendered into the Site's configuration; False with reason SiteNotFound,
    /// SiteDeleting, PartnerLinkMissing, DuplicatePartner or InvalidSpec), Agreed (both sides
    /// declared the same agreement, as the site's alerting found; False with reason Pending,
    /// Mismatch, Unreachable or AlertingUnreachable) and Ready (both).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Accepted, Mismatch or Unreachable, as the site's alerting reports it; unset
    /// while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why the state is not Accepted, as alerting put it (which terms differ, the TLS error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The last successful exchange with the partner, either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<Time>,
    /// SHA-256 (hex) of the canonical terms as declared here, and as the partner declared them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_terms_digest: Option<String>,
    /// Alerts forwarded to and received from the partner since the alerting replica started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<i64>,
    /// Forwards dropped after their last attempt, and waiting or being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
}
