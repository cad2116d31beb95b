#!/usr/bin/env python3
"""The authorisation matrix: every RPC of every service, called as every kind of caller.

`kordon standalone` refuses to run without the development identity (its services reach each
other over its own listener with no certificate of their own), and with it a call without
credentials is an admin. So this check runs the production topology instead: camsim plus
`kordon storage`, `ingest`, `detection`, `alerting` and `transcode`, each its own process on free
loopback ports with KORDON_DEV_IDENTITY=0, TLS with `tls.client_ca_file`, `auth.jwt` with an
Ed25519 key this script makes, and mTLS between the services (a certificate naming
spiffe://kordon.io/ns/e2e/site/{burgas,edirne}/internal). Storage declares `partners.site:
burgas`, so footage grants are decided on burgas. Ingest records burgas/port-gate and
edirne/kapikule-1; detection watches port-gate; transcode makes thumbnails.

Then:
  1. reflection on every process gives every service and method (health and reflection
     excepted); a method missing from TABLE below fails the run, so a new RPC must be classified;
  2. a request for each method is built from its descriptor (site/camera of the target,
     reasons, case, unique request ids, times inside what is recorded, ids of objects seeded on
     burgas: a rule, a legal hold, an evidence bundle, a transcode job, a snapshot, an alert);
  3. each method is called as: nobody, a forged token, an expired token, a viewer, operator,
     auditor and admin of burgas, the same four of edirne only, and service certificates of
     burgas and of edirne. Expected: UNAUTHENTICATED for the first three; PERMISSION_DENIED
     (or NOT_FOUND where the service hides another site's object) where the role lacks the
     permission or the site is wrong; anything else where allowed (NOT_FOUND, INVALID_ARGUMENT
     and such are counted and shown);
  4. all denied calls run first; the access-log entries of the matrix's identities, rules,
     alerts, holds, jobs, grants, cameras and retention are compared before and after: equal;
  5. lists that scope themselves (no site named) called by edirne's people return nothing of
     burgas;
  6. playback HTTP: a valid playlist, segment and bundle URL work; tampered, expired, and a
     token replayed for another camera, segment or bundle are refused with 401/403, not 500.
Prints the matrix (methods x identities) and `e2e: N passed, M failed`.

Run: python e2e/authz_matrix.py --kordon target/debug/kordon
"""

import argparse
import base64
import collections
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory, timestamp_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from common import check, failed, free_ports, mint_jwt, stop, summary, wait_port

sys.path.insert(0, os.path.dirname(__file__))
from detection_check import ort_env  # noqa: E402

SITE, OTHER = "burgas", "edirne"
CAMERA, OTHER_CAMERA = "port-gate", "kapikule-1"
# Register* calls of allowed callers write index records: onto a camera nobody records.
SCRATCH_CAMERA = "authz-scratch"
ISSUER, AUDIENCE = "https://id.e2e.kordon.test", "kordon"

# Permission -> roles, as crates/runtime/src/auth.rs `Permission::roles` says.
ROLES = {
    "ViewStatus": {"viewer", "operator", "auditor", "admin", "service"},
    "ReadFootage": {"viewer", "operator", "auditor", "admin", "service"},
    "HandleAlerts": {"operator", "admin"},
    "ExportEvidence": {"auditor", "admin"},
    "ManageHolds": {"auditor", "admin"},
    "ReadAccessLog": {"auditor", "admin"},
    "Administer": {"admin"},
    "WriteMedia": {"service", "admin"},
    "PartnerFootage": {"operator", "auditor", "admin"},
    "Transcode": {"operator", "admin", "service"},
}

# Method -> (kind, permission). Kinds:
#   site      authorised on the site the request names (its camera's, its rule's...);
#   object    looked up by id, then authorised on the object's site (PERMISSION_DENIED);
#   hidden    as object, but another site's object answers NOT_FOUND (it does not exist for
#             the caller: snapshots and evidence bundles);
#   scoped    any authenticated caller; the answer holds only what the caller may see;
#   anysite   needs the permission on at least one site (status of the service itself);
#   partner   partner link only: refused to everyone on this listener;
#   unsupported  answered FAILED_PRECONDITION to every authenticated caller: sinks and
#             agreements are configuration (Site/Partner resources), not RPCs; nothing changes.
# Footage grants (storage) are authorised on this installation's site (`partners.site`),
# which is burgas here: the `site` kind with the target site holds.
TABLE = {
    "kordon.common.v1.IdentityService/WhoAmI": ("scoped", None),

    "kordon.storage.v1.StorageService/RegisterSegment": ("site", "WriteMedia"),
    "kordon.storage.v1.StorageService/RegisterGap": ("site", "WriteMedia"),
    "kordon.storage.v1.StorageService/GetChainHead": ("site", "ViewStatus"),
    "kordon.storage.v1.StorageService/LocateSegments": ("site", "ViewStatus"),
    "kordon.storage.v1.StorageService/RegisterRendition": ("site", "WriteMedia"),
    "kordon.storage.v1.StorageService/RegisterSnapshot": ("site", "WriteMedia"),
    "kordon.storage.v1.StorageService/ListRecordings": ("site", "ReadFootage"),
    "kordon.storage.v1.StorageService/ListSegments": ("site", "ReadFootage"),
    "kordon.storage.v1.StorageService/GetSegment": ("site", "ReadFootage"),
    "kordon.storage.v1.StorageService/GetPlaybackUrl": ("site", "ReadFootage"),
    "kordon.storage.v1.StorageService/ListRenditions": ("site", "ReadFootage"),
    "kordon.storage.v1.StorageService/GetSnapshot": ("hidden", "ReadFootage"),
    "kordon.storage.v1.StorageService/ListSnapshots": ("site", "ReadFootage"),
    "kordon.storage.v1.StorageService/GetRetentionPolicy": ("site", "ViewStatus"),
    "kordon.storage.v1.StorageService/SetRetentionPolicy": ("site", "Administer"),
    "kordon.storage.v1.StorageService/CreateLegalHold": ("site", "ManageHolds"),
    "kordon.storage.v1.StorageService/ReleaseLegalHold": ("object", "ManageHolds"),
    "kordon.storage.v1.StorageService/ListLegalHolds": ("site", "ManageHolds"),
    "kordon.storage.v1.StorageService/VerifyChain": ("site", "ExportEvidence"),
    "kordon.storage.v1.StorageService/ExportEvidence": ("site", "ExportEvidence"),
    "kordon.storage.v1.StorageService/GetEvidenceBundle": ("hidden", "ExportEvidence"),
    "kordon.storage.v1.StorageService/ListEvidenceBundles": ("site", "ExportEvidence"),
    # Checks digests a caller sends; reads no footage: any role on any site.
    "kordon.storage.v1.StorageService/VerifyEvidenceBundle": ("anysite", "ViewStatus"),
    "kordon.storage.v1.StorageService/ListAccessLog": ("site", "ReadAccessLog"),
    "kordon.storage.v1.StorageService/VerifyAccessLog": ("site", "ReadAccessLog"),
    # An admin holds WriteMedia too, but records access only for itself: the request names the
    # caller's own subject.
    "kordon.storage.v1.StorageService/RecordAccess": ("site", "WriteMedia"),
    "kordon.storage.v1.StorageService/RequestFootage": ("site", "PartnerFootage"),
    "kordon.storage.v1.StorageService/ListFootageGrants": ("site", "PartnerFootage"),
    "kordon.storage.v1.StorageService/DecideFootageGrant": ("site", "PartnerFootage"),
    "kordon.storage.v1.StorageService/FetchFootageGrant": ("site", "PartnerFootage"),

    "kordon.ingest.v1.IngestService/GetCameraStatus": ("site", "ViewStatus"),
    "kordon.ingest.v1.IngestService/ListCameraStatus": ("site", "ViewStatus"),
    "kordon.ingest.v1.IngestService/WatchCameraStatus": ("site", "ViewStatus"),
    "kordon.ingest.v1.IngestService/ApplyCameras": ("site", "Administer"),
    "kordon.ingest.v1.IngestService/RemoveCamera": ("site", "Administer"),
    "kordon.ingest.v1.IngestService/GetShard": ("scoped", "ViewStatus"),

    "kordon.detection.v1.DetectionService/ListDetections": ("site", "ViewStatus"),
    "kordon.detection.v1.DetectionService/WatchDetections": ("site", "ViewStatus"),
    "kordon.detection.v1.DetectionService/GetSnapshot": ("hidden", "ReadFootage"),
    "kordon.detection.v1.DetectionService/GetDetectorStatus": ("site", "ViewStatus"),
    # Detection's cameras are placed by the operator's (service) client: WriteMedia.
    "kordon.detection.v1.DetectionService/ApplyCameras": ("site", "WriteMedia"),
    "kordon.detection.v1.DetectionService/RemoveCamera": ("site", "WriteMedia"),
    "kordon.detection.v1.DetectionService/GetShard": ("scoped", "ViewStatus"),

    "kordon.alerting.v1.AlertingService/CreateRule": ("site", "Administer"),
    "kordon.alerting.v1.AlertingService/GetRule": ("object", "ViewStatus"),
    "kordon.alerting.v1.AlertingService/ListRules": ("site", "ViewStatus"),
    "kordon.alerting.v1.AlertingService/UpdateRule": ("object", "Administer"),
    "kordon.alerting.v1.AlertingService/DeleteRule": ("object", "Administer"),
    "kordon.alerting.v1.AlertingService/ListAlerts": ("site", "ViewStatus"),
    "kordon.alerting.v1.AlertingService/GetAlert": ("object", "ViewStatus"),
    "kordon.alerting.v1.AlertingService/WatchAlerts": ("site", "ViewStatus"),
    "kordon.alerting.v1.AlertingService/AcknowledgeAlert": ("object", "HandleAlerts"),
    "kordon.alerting.v1.AlertingService/HoldAlert": ("object", "HandleAlerts"),
    "kordon.alerting.v1.AlertingService/ResolveAlert": ("object", "HandleAlerts"),
    "kordon.alerting.v1.AlertingService/ListSinks": ("anysite", "ViewStatus"),
    "kordon.alerting.v1.AlertingService/PutSink": ("unsupported", None),
    "kordon.alerting.v1.AlertingService/DeleteSink": ("unsupported", None),
    "kordon.alerting.v1.AlertingService/ListSiteTimeZones": ("anysite", "ViewStatus"),
    # Alerting here declares no partners: its agreements list needs a role on any site.
    "kordon.alerting.v1.AlertingService/ListSharingAgreements": ("anysite", "ViewStatus"),
    "kordon.alerting.v1.AlertingService/PutSharingAgreement": ("unsupported", None),
    "kordon.alerting.v1.AlertingService/DeleteSharingAgreement": ("unsupported", None),
    "kordon.alerting.v1.AlertingService/ReceivePartnerAlert": ("partner", None),
    "kordon.alerting.v1.AlertingService/ExchangeAgreement": ("partner", None),
    "kordon.alerting.v1.AlertingService/ReceivePartnerAction": ("partner", None),

    "kordon.transcode.v1.TranscodeService/SubmitJob": ("site", "Transcode"),
    "kordon.transcode.v1.TranscodeService/GetJob": ("object", "ViewStatus"),
    "kordon.transcode.v1.TranscodeService/ListJobs": ("site", "ViewStatus"),
    "kordon.transcode.v1.TranscodeService/WatchJob": ("object", "ViewStatus"),
    "kordon.transcode.v1.TranscodeService/CancelJob": ("object", "Transcode"),
    "kordon.transcode.v1.TranscodeService/GetStatus": ("anysite", "ViewStatus"),
}

# Which seeded object an `object`/`hidden` method's id field names.
OBJECT_OF = {
    "ReleaseLegalHold": "hold", "GetRule": "rule", "UpdateRule": "rule", "DeleteRule": "rule",
    "GetAlert": "alert", "AcknowledgeAlert": "alert", "HoldAlert": "alert", "ResolveAlert": "alert",
    "GetJob": "job", "WatchJob": "job", "CancelJob": "job",
    "GetEvidenceBundle": "bundle", "StorageService/GetSnapshot": "snapshot",
    "DetectionService/GetSnapshot": "detection_snapshot",
}

SKIP_SERVICES = ("grpc.health.", "grpc.reflection.")
UNAUTH, DENIED, HIDDEN, ALLOWED = "unauthenticated", "denied", "hidden", "allowed"


# ---------------------------------------------------------------------------------------------
# Keys, certificates, tokens
# ---------------------------------------------------------------------------------------------

def sh(*args):
    return subprocess.run(list(args), check=True, capture_output=True).stdout


def make_pki(work):
    """CA, the servers' certificate, and client certificates; paths by name."""
    p = {k: os.path.join(work, k) for k in ("ca.key", "ca.crt")}
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", p["ca.key"], "-out", p["ca.crt"], "-days", "2", "-subj", "/CN=authz matrix CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, san, usage):
        key, csr, crt, ext = (os.path.join(work, f"{name}.{x}") for x in ("key", "csr", "crt", "ext"))
        with open(ext, "w") as f:
            f.write(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    f"extendedKeyUsage={usage}\nsubjectAltName={san}\n")
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
           "-out", csr, "-subj", f"/CN={name}")
        sh("openssl", "x509", "-req", "-in", csr, "-CA", p["ca.crt"], "-CAkey", p["ca.key"], "-CAcreateserial",
           "-out", crt, "-days", "2", "-extfile", ext)
        p[f"{name}.crt"], p[f"{name}.key"] = crt, key

    leaf("server", "IP:127.0.0.1,DNS:localhost", "serverAuth")
    ident = "URI:spiffe://kordon.io/ns/e2e/site/{}/{}"
    leaf("internal", f"{ident.format(SITE, 'internal')},{ident.format(OTHER, 'internal')}", "clientAuth")
    leaf("svc-burgas", ident.format(SITE, "matrix"), "clientAuth")
    leaf("svc-edirne", ident.format(OTHER, "matrix"), "clientAuth")
    for name in ("jwt", "forger"):
        path = os.path.join(work, f"{name}.pem")
        sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", path)
        p[name] = path
    p["jwt.pub"] = os.path.join(work, "jwt.pub.pem")
    sh("openssl", "pkey", "-in", p["jwt"], "-pubout", "-out", p["jwt.pub"])
    return p


def mint(key, sub, roles, exp_in=3600):
    """An EdDSA JWT of this check's issuer and audience."""
    return mint_jwt(key, ISSUER, AUDIENCE, sub, roles, exp_in)


class Identity:
    def __init__(self, name, kind, site=None, role=None, token=None, cert=None, subject=None):
        self.name, self.kind, self.site, self.role = name, kind, site, role
        self.token, self.cert, self.subject = token, cert, subject or name

    def allowed(self, permission, site):
        return self.site == site and self.role in ROLES[permission]


def identities(pki):
    ids = [
        Identity("nobody", "nobody"),
        Identity("forged", "forged", token=mint(pki["forger"], "matrix-forged", {"*": ["admin"]})),
        Identity("expired", "expired", token=mint(pki["jwt"], "matrix-expired", {"*": ["admin"]}, exp_in=-3600)),
    ]
    for site in (SITE, OTHER):
        for role in ("viewer", "operator", "auditor", "admin"):
            sub = f"matrix-{role}-{site}"
            ids.append(Identity(f"{role}@{site}", "person", site, role, token=mint(pki["jwt"], sub, {site: [role]}),
                                subject=sub))
    for site in (SITE, OTHER):
        ids.append(Identity(f"service@{site}", "service", site, "service",
                            cert=(pki[f"svc-{site}.crt"], pki[f"svc-{site}.key"]), subject=f"matrix.{site}"))
    return ids


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def start_all(kordon, work, pki, env):
    ports = {}
    procs = {}
    rtsp, control = free_ports(2)
    procs["camsim"] = subprocess.Popen(
        [kordon, "camsim", "--cameras", "2", "--listen", f"127.0.0.1:{rtsp}", "--control-listen",
         f"127.0.0.1:{control}", "--source", "clip"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "camsim.log"), "w"))
    wait_port(control, timeout=300)
    for name in ("storage", "transcode", "detection", "alerting", "ingest"):
        ports[name] = free_ports(3)

    def client(service):
        return {"url": f"https://127.0.0.1:{ports[service][0]}", "ca_file": pki["ca.crt"],
                "cert_file": pki["internal.crt"], "key_file": pki["internal.key"]}

    common = {
        "tls": {"cert_file": pki["server.crt"], "key_file": pki["server.key"], "client_ca_file": pki["ca.crt"]},
        "auth": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE,
                         "keys": [{"algorithm": "EdDSA", "public_key_file": pki["jwt.pub"]}]}},
    }
    objects = {"kind": "local", "root": os.path.join(work, "media")}
    cam = lambda i: f"rtsp://127.0.0.1:{rtsp}/cam{i}"  # noqa: E731
    road = {"zones": [{"name": "road", "area": [[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]]}]}
    configs = {
        "storage": {"storage": {"objects": objects, "transcode": client("transcode")},
                    "partners": {"site": SITE}},
        "ingest": {"storage": {"objects": objects}, "ingest": {"storage": client("storage")},
                   "sites": [{"name": SITE, "cameras": [{"name": CAMERA, "record": cam(1) + "/main"}]},
                             {"name": OTHER, "cameras": [{"name": OTHER_CAMERA, "record": cam(2) + "/main"}]}]},
        "detection": {"storage": {"objects": objects}, "detection": {"storage": client("storage")},
                      "sites": [{"name": SITE, "cameras": [{"name": CAMERA, "record": cam(1) + "/main",
                                                            "detect": cam(1) + "/sub", "detection": road}]}]},
        "alerting": {"alerting": {
            "storage": client("storage"),
            "detection": {"endpoints": [client("detection")["url"]], "ca_file": pki["ca.crt"],
                          "cert_file": pki["internal.crt"], "key_file": pki["internal.key"]},
            "time_zones": {SITE: "Europe/Sofia", OTHER: "Europe/Istanbul"},
            "rules": [{"name": "person-on-the-road", "site": SITE, "severity": "high", "cameras": [CAMERA],
                       "classes": ["person"], "zone": {"zones": ["road"], "min_dwell": "1s"}}]}},
        "transcode": {"storage": {"objects": objects}, "transcode": {"storage": client("storage")},
                      "sites": [{"name": SITE, "cameras": []}, {"name": OTHER, "cameras": []}]},
    }
    for name in ("storage", "transcode", "detection", "alerting", "ingest"):
        cfg = os.path.join(work, f"{name}.yaml")
        with open(cfg, "w") as f:
            json.dump({**common, **configs[name]}, f)  # YAML is a superset of JSON
        g, a, h = ports[name]
        log = open(os.path.join(work, f"{name}.log"), "w")
        procs[name] = subprocess.Popen(
            [kordon, name, "--config", cfg, "--data-dir", os.path.join(work, name), "--grpc-listen",
             f"127.0.0.1:{g}", "--admin-listen", f"127.0.0.1:{a}", "--http-listen", f"127.0.0.1:{h}"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline and procs[name].poll() is None:
            try:
                wait_port(g, timeout=1)
                break
            except SystemExit:
                pass
        if procs[name].poll() is not None:
            raise SystemExit(f"kordon {name} exited {procs[name].returncode}; see {log.name}")
    return procs, ports


# ---------------------------------------------------------------------------------------------
# Calling
# ---------------------------------------------------------------------------------------------

class Conn:
    """One channel per (process, identity): TLS, the identity's certificate or bearer token."""

    def __init__(self, pki):
        with open(pki["ca.crt"], "rb") as f:
            self.ca = f.read()
        self.channels = {}

    def channel(self, port, ident):
        key = (port, ident.name)
        if key not in self.channels:
            if ident.cert:
                with open(ident.cert[0], "rb") as c, open(ident.cert[1], "rb") as k:
                    creds = grpc.ssl_channel_credentials(self.ca, k.read(), c.read())
            else:
                creds = grpc.ssl_channel_credentials(self.ca)
            self.channels[key] = grpc.secure_channel(
                f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])
        return self.channels[key]


class Method:
    def __init__(self, port, pool, m):
        self.port, self.desc = port, m
        self.full = f"{m.containing_service.full_name}/{m.name}"
        self.short = f"{m.containing_service.name}/{m.name}"
        self.req_cls = message_factory.GetMessageClass(m.input_type)
        self.resp_cls = message_factory.GetMessageClass(m.output_type)
        self.streaming = m.server_streaming


def call(conn, method, ident, req, timeout=5.0):
    """(code name, response dict or None). Server streams: the first message, or the status."""
    ch = conn.channel(method.port, ident)
    md = [("authorization", f"Bearer {ident.token}")] if ident.token else None
    path = f"/{method.full}"
    try:
        if method.streaming:
            stub = ch.unary_stream(path, request_serializer=method.req_cls.SerializeToString,
                                   response_deserializer=method.resp_cls.FromString)
            it = stub(req, timeout=timeout, metadata=md)
            try:
                first = next(it)
            except StopIteration:
                return "OK", {}
            finally:
                it.cancel()
            return "OK", json_format.MessageToDict(first, preserving_proto_field_name=True)
        stub = ch.unary_unary(path, request_serializer=method.req_cls.SerializeToString,
                              response_deserializer=method.resp_cls.FromString)
        resp = stub(req, timeout=timeout, metadata=md)
        return "OK", json_format.MessageToDict(resp, preserving_proto_field_name=True)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.CANCELLED and method.streaming:
            return "OK", {}
        return e.code().name, {"details": e.details()}


def discover(conn, ports, observer):
    """Every method of every Kordon service, from each process's reflection."""
    methods = {}
    for name, (g, _, _) in ports.items():
        ch = conn.channel(g, observer)
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        names = []
        for resp in stub.ServerReflectionInfo(iter([req]), timeout=10):
            names = [s.name for s in resp.list_services_response.service]
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(ch))
        for s in names:
            if s.startswith(SKIP_SERVICES):
                continue
            for m in pool.FindServiceByName(s).methods:
                meth = Method(g, pool, m)
                # IdentityService is on every process: once per process is one row each.
                key = meth.full if not meth.full.startswith("kordon.common.") else f"{meth.full}@{name}"
                methods[key] = meth
    return methods


# ---------------------------------------------------------------------------------------------
# Requests from descriptors
# ---------------------------------------------------------------------------------------------

class Ctx:
    """What generic requests are filled with."""

    def __init__(self):
        self.site, self.camera = SITE, CAMERA
        self.start_us = self.end_us = 0
        self.sequence = 1
        self.ids = {}
        self.subject = "matrix"
        self.method = ""
        self.method_id_field = None
        self.objects = {}

    def ts(self, us):
        t = timestamp_pb2.Timestamp()
        t.FromMicroseconds(int(us))
        return t.ToJsonString()


def fill(desc, ctx, depth=0):
    """A dict for json_format.ParseDict: every field a plausible value, messages recursively."""
    out = {}
    name = desc.full_name
    if name == "google.protobuf.Timestamp":
        return ctx.ts(ctx.start_us)
    if name == "google.protobuf.Duration":
        return "3600s"
    if name == "kordon.common.v1.CameraRef":
        writes = ctx.method.split("/")[-1].startswith(("Register", "ApplyCameras", "RemoveCamera"))
        cam = SCRATCH_CAMERA if writes else ctx.camera
        return {"site": ctx.site, "camera": cam}
    if name == "kordon.common.v1.TimeRange":
        return {"start": ctx.ts(ctx.start_us), "end": ctx.ts(ctx.end_us)}
    if name == "kordon.common.v1.AuditContext":
        return {"reason": "authorisation matrix (e2e)", "case_id": "CASE-AUTHZ-1", "recipient": ""}
    if name == "kordon.common.v1.PageRequest":
        return {"page_size": 10}
    if depth > 4:
        return out
    seen_oneofs = set()
    for f in desc.fields:
        if f.containing_oneof is not None:
            if f.containing_oneof.name in seen_oneofs:
                continue
            prefer = {"kordon.transcode.v1.JobSpec": "thumbnails"}.get(name)
            if prefer and f.name != prefer:
                continue
            seen_oneofs.add(f.containing_oneof.name)
        v = value(f, ctx, depth)
        if v is not None:
            out[f.name] = v
    return out


def value(f, ctx, depth):
    n = f.name
    repeated = f.is_repeated
    if f.message_type is not None:
        if f.message_type.GetOptions().map_entry or n == "schedule":
            return None  # a rule's schedule is optional; a made-up one only fails validation
        if n.endswith("ttl"):
            v = "60s"
        elif n == "retention":
            v = f"{30 * 86400}s"
        elif f.message_type.full_name == "google.protobuf.Duration" and n == "interval":
            v = "6s"
        else:
            v = fill(f.message_type, ctx, depth + 1)
        return [v] if repeated else v
    if repeated:
        return None  # filters: empty means all
    t = f.type
    if t == descriptor.FieldDescriptor.TYPE_STRING:
        if n == "site" or n.endswith("_site"):
            return ctx.site
        if n == "camera":
            return ctx.camera
        if n in ("principal", "requested_by", "by"):
            return ctx.subject
        if n == "request_id":
            return str(uuid.uuid4())
        if n == "case_id":
            return "CASE-AUTHZ-1"
        if n in ctx.ids:
            return ctx.ids[n]
        if n == "id":
            return ctx.ids.get(ctx.method_id_field or "", str(uuid.uuid4()))
        if n.endswith("_id"):
            return str(uuid.uuid4())
        if n in ("object_key",):
            return f"{ctx.site}/{SCRATCH_CAMERA}/authz-{uuid.uuid4()}.mp4"
        if n == "content_type":
            return "image/jpeg"
        # `source` names a partner an access came from: none here.
        if n in ("profile", "rendition_profile", "page_token", "cursor", "recipient", "source"):
            return ""
        if n in ("record_url", "detect_url"):
            return "rtsp://127.0.0.1:9/authz"
        if n == "url" or n.endswith("_url"):
            return "https://127.0.0.1:9/authz"
        return "authz matrix"
    if t == descriptor.FieldDescriptor.TYPE_BOOL:
        return False
    if t == descriptor.FieldDescriptor.TYPE_ENUM:
        vals = f.enum_type.values
        return vals[1].name if len(vals) > 1 else vals[0].name
    if t == descriptor.FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(b"\0" * 32).decode()
    if t in (descriptor.FieldDescriptor.TYPE_FLOAT, descriptor.FieldDescriptor.TYPE_DOUBLE):
        return 0.5 if "confidence" in n else 0.0
    # integers
    if n in ("sequence", "source_sequence"):
        return ctx.sequence
    if n in ("width", "max_height"):
        return 320
    if n == "height":
        return 180
    if n in ("size_bytes", "init_size"):
        return 1000
    if n.endswith("_bps"):
        return 100000
    if n == "page_size":
        return 10
    return 0


ID_FIELDS = {"rule": "rule_id", "alert": "alert_id", "job": "job_id", "hold": "hold_id", "bundle": "bundle_id",
             "snapshot": "snapshot_id", "detection_snapshot": "snapshot_id", "grant": "grant_id"}


def request(method, ctx, ident=None, site=None):
    ctx.method = method.full
    ctx.site = site or SITE
    ctx.camera = CAMERA if ctx.site == SITE else OTHER_CAMERA
    ctx.subject = ident.subject if ident else "matrix"
    obj = next((v for k, v in OBJECT_OF.items() if method.full.endswith(k)), None)
    saved = dict(ctx.ids)
    ctx.method_id_field = None
    if obj:
        field = ID_FIELDS[obj]
        ctx.ids[field] = ctx.objects.get(obj) or f"authz-unseeded-{uuid.uuid4()}"
        if obj == "rule":
            ctx.method_id_field = field  # Rule.id in UpdateRule
    body = fill(method.desc.input_type, ctx)
    ctx.ids = saved
    return json_format.ParseDict(body, method.req_cls())


# ---------------------------------------------------------------------------------------------
# Seeding, state, expectations
# ---------------------------------------------------------------------------------------------

def find_key(d, key):
    """Every value of `key` anywhere in a JSON-like structure."""
    if isinstance(d, dict):
        for k, v in d.items():
            if k == key and isinstance(v, (str, int)):
                yield v
            else:
                yield from find_key(v, key)
    elif isinstance(d, list):
        for v in d:
            yield from find_key(v, key)


def rpc(conn, methods, name, ident, body, timeout=10):
    m = methods[name]
    return call(conn, m, ident, json_format.ParseDict(body, m.req_cls()), timeout=timeout)


def wait_recorded(conn, methods, observer, ctx, deadline):
    audit = {"reason": "authorisation matrix (e2e): setup", "case_id": "CASE-AUTHZ-1"}
    name = "kordon.storage.v1.StorageService/ListSegments"
    segs = []
    while time.time() < deadline:
        now = int(time.time() * 1e6)
        ok = True
        for site, cam in ((SITE, CAMERA), (OTHER, OTHER_CAMERA)):
            code, r = rpc(conn, methods, name, observer,
                          {"camera": {"site": site, "camera": cam},
                           "range": {"start": ctx.ts(now - 600_000_000), "end": ctx.ts(now)},
                           "audit": audit, "page": {"page_size": 100}})
            if site == SITE:
                segs = r.get("segments", []) if code == "OK" else []
            ok = ok and code == "OK" and len(r.get("segments", [])) >= 2
        if ok and len(segs) >= 3:
            break
        time.sleep(3)
    return segs


def seed(conn, methods, observer, admin, ctx, segs):
    """Objects of burgas for the id-keyed methods: {kind: id}."""
    objs = {}
    s = "kordon.storage.v1.StorageService/"
    audit = {"reason": "authorisation matrix (e2e): setup", "case_id": "CASE-AUTHZ-1"}
    cam = {"site": SITE, "camera": CAMERA}
    rng = {"start": ctx.ts(ctx.start_us), "end": ctx.ts(ctx.end_us)}
    code, r = rpc(conn, methods, s + "CreateLegalHold", admin,
                  {"cameras": [cam], "range": rng, "audit": audit, "request_id": str(uuid.uuid4())})
    objs["hold"] = next(find_key(r, "id"), None) if code == "OK" else None
    code, r = rpc(conn, methods, "kordon.alerting.v1.AlertingService/CreateRule", admin,
                  {"rule": {"site": SITE, "name": "authz-seed", "severity": "ALERT_SEVERITY_LOW",
                            "cameras": [cam], "classes": ["person"], "zone": {"zones": ["road"]}}})
    if code != "OK":
        code, r = rpc(conn, methods, "kordon.alerting.v1.AlertingService/ListRules", observer, {"site": SITE})
    objs["rule"] = next(find_key(r, "id"), None) if code == "OK" else None
    code, r = rpc(conn, methods, "kordon.transcode.v1.TranscodeService/SubmitJob", admin,
                  {"spec": {"thumbnails": {"camera": cam, "range": rng, "width": 160}}, "audit": audit,
                   "request_id": str(uuid.uuid4())})
    objs["job"] = next(find_key(r, "id"), None) if code == "OK" else None
    # An evidence bundle: read the export's stream to its end.
    m = methods[s + "ExportEvidence"]
    req = json_format.ParseDict({"cameras": [cam], "range": rng, "audit": audit, "description": "authz seed",
                                 "request_id": str(uuid.uuid4())}, m.req_cls())
    try:
        stub = conn.channel(m.port, admin).unary_stream(f"/{m.full}", request_serializer=m.req_cls.SerializeToString,
                                                       response_deserializer=m.resp_cls.FromString)
        for resp in stub(req, timeout=120, metadata=[("authorization", f"Bearer {admin.token}")]):
            if resp.bundle_id:
                objs["bundle"] = resp.bundle_id
    except grpc.RpcError as e:
        print(f"    (seed: ExportEvidence {e.code().name}: {e.details()})")
    # Snapshots: transcode's thumbnails job above and detection's snapshots.
    deadline = time.time() + 60
    while time.time() < deadline and not objs.get("snapshot"):
        code, r = rpc(conn, methods, s + "ListSnapshots", observer,
                      {"camera": cam, "range": {"start": ctx.ts(ctx.start_us - 600_000_000),
                                                "end": ctx.ts(int(time.time() * 1e6))},
                       "audit": audit, "page": {"page_size": 5}})
        objs["snapshot"] = next(find_key(r.get("snapshots", []), "id"), None) if code == "OK" else None
        if not objs["snapshot"]:
            time.sleep(3)
    code, r = rpc(conn, methods, "kordon.detection.v1.DetectionService/ListDetections", observer,
                  {"site": SITE, "page": {"page_size": 50}})
    objs["detection_snapshot"] = next(find_key(r, "snapshot_id"), None) if code == "OK" else None
    code, r = rpc(conn, methods, "kordon.alerting.v1.AlertingService/ListAlerts", observer,
                  {"site": SITE, "page": {"page_size": 5}})
    objs["alert"] = next(find_key(r.get("alerts", []), "id"), None) if code == "OK" else None
    return objs


ALERTS = "alerts (state, acknowledgement, resolution)"

def state(conn, methods, observer, subjects):
    """What a denied call must not change, as read by an admin of every site."""
    st = {}
    s = "kordon.storage.v1.StorageService/"
    for site in (SITE, OTHER):
        entries, token = [], ""
        for _ in range(50):
            code, r = rpc(conn, methods, s + "ListAccessLog", observer,
                          {"site": site, "audit": {"reason": "authorisation matrix (e2e): state"},
                           "page": {"page_size": 500, "page_token": token}})
            if code != "OK":
                entries.append(code)
                break
            entries += [json.dumps(e, sort_keys=True) for e in r.get("entries", []) if e.get("principal") in subjects]
            token = r.get("page", {}).get("next_page_token", "")
            if not token:
                break
        st[f"access log of {site} (matrix identities)"] = sorted(entries)
    code, r = rpc(conn, methods, s + "ListLegalHolds", observer, {"include_released": True, "page": {"page_size": 500}})
    st["legal holds"] = sorted(json.dumps(h, sort_keys=True) for h in r.get("holds", [])) if code == "OK" else code
    for site in (SITE, OTHER):
        code, r = rpc(conn, methods, s + "GetRetentionPolicy", observer, {"site": site})
        st[f"retention of {site}"] = r if code == "OK" else code
    code, r = rpc(conn, methods, s + "ListFootageGrants", observer, {"page": {"page_size": 500}})
    st["footage grants"] = r if code == "OK" else code
    code, r = rpc(conn, methods, "kordon.alerting.v1.AlertingService/ListRules", observer, {"page": {"page_size": 500}})
    st["rules"] = r if code == "OK" else code
    code, r = rpc(conn, methods, "kordon.alerting.v1.AlertingService/ListAlerts", observer, {"page": {"page_size": 500}})
    # Detection may raise new alerts meanwhile, and updates open ones (occurrences, last seen,
    # version) while the person stays in view: compared are what people change — state,
    # acknowledgement, resolution — of the alerts there before.
    st[ALERTS] = {a.get("id"): (a.get("state"), a.get("acknowledged_by"), a.get("acknowledge_note"),
                                a.get("resolved_by"), a.get("resolution"), a.get("resolve_note"))
                  for a in r.get("alerts", [])} if code == "OK" else code
    code, r = rpc(conn, methods, "kordon.transcode.v1.TranscodeService/ListJobs", observer, {"page": {"page_size": 500}})
    st["transcode jobs submitted by matrix identities"] = sorted(
        j.get("id") for j in r.get("jobs", []) if j.get("submitted_by") in subjects) if code == "OK" else code
    code, r = rpc(conn, methods, "kordon.ingest.v1.IngestService/GetShard", observer, {})
    st["ingest cameras"] = sorted(json.dumps(c, sort_keys=True) for c in r.get("cameras", [])) if code == "OK" else code
    code, r = rpc(conn, methods, "kordon.detection.v1.DetectionService/GetShard", observer, {})
    st["detection cameras"] = sorted(json.dumps(c, sort_keys=True) for c in r.get("cameras", [])) if code == "OK" else code
    return st


def expect(kind, perm, ident, objs_seeded):
    """The expected class of a call."""
    if ident.kind in ("nobody", "forged", "expired"):
        return UNAUTH
    if kind in ("scoped", "anysite", "unsupported"):
        return ALLOWED
    if kind == "partner":
        return DENIED
    if ident.allowed(perm, SITE):
        return ALLOWED
    if kind == "hidden" or (kind == "object" and not objs_seeded):
        return HIDDEN
    return DENIED


def classify(code):
    return {"UNAUTHENTICATED": UNAUTH, "PERMISSION_DENIED": DENIED}.get(code, ALLOWED)


def matches(expected, code):
    if expected == HIDDEN:
        return code == "NOT_FOUND"
    return classify(code) == expected


SHORT = {"OK": "ok", "UNAUTHENTICATED": "UA", "PERMISSION_DENIED": "PD", "NOT_FOUND": "NF",
         "INVALID_ARGUMENT": "IA", "FAILED_PRECONDITION": "FP", "DEADLINE_EXCEEDED": "DE", "UNIMPLEMENTED": "UI",
         "RESOURCE_EXHAUSTED": "RE", "ALREADY_EXISTS": "AE", "ABORTED": "AB", "UNAVAILABLE": "UV", "INTERNAL": "IN",
         "OUT_OF_RANGE": "OR", "CANCELLED": "CA", "UNKNOWN": "UK"}


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

def http_status(url, ctx_ssl):
    try:
        with urllib.request.urlopen(url, timeout=15, context=ctx_ssl) as r:
            r.read(1024)
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError) as e:
        return f"error {e}"


def tamper(token):
    return token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]


def http_checks(conn, methods, viewer, auditor, ctx, pki, segs, bundle):
    print("playback HTTP: valid, tampered, expired, replayed for another object")
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
    sslc = ssl.create_default_context(cafile=pki["ca.crt"])
    sslc.check_hostname = False
    refused = (401, 403)
    s = "kordon.storage.v1.StorageService/"
    audit = {"reason": "authorisation matrix (e2e): playback", "case_id": "CASE-AUTHZ-1"}
    rng = {"start": ctx.ts(ctx.start_us), "end": ctx.ts(ctx.end_us)}
    code, r = rpc(conn, methods, s + "GetPlaybackUrl", viewer,
                  {"camera": {"site": SITE, "camera": CAMERA}, "range": rng, "audit": audit, "url_ttl": "120s"})
    url = r.get("playback", {}).get("url", "")
    check("GetPlaybackUrl as viewer@burgas gives a URL", code == "OK" and url, f"({code} {r})")
    if url:
        st = http_status(url, sslc)
        check("the playlist URL answers 200", st == 200, f"(got {st})")
        parts = urlsplit(url)
        q = dict(parse_qsl(parts.query))
        bad = urlunsplit(parts._replace(query=urlencode({**q, "token": tamper(q.get("token", "xx"))})))
        st = http_status(bad, sslc)
        check("a tampered playlist token is refused (401/403)", st in refused, f"(got {st})")
        bad = urlunsplit(parts._replace(query=urlencode({**q, "exp": str(int(q.get("exp", "0")) + 3600)})))
        st = http_status(bad, sslc)
        check("a playlist token with its expiry moved is refused", st in refused, f"(got {st})")
        other = urlunsplit(parts._replace(path=parts.path.replace(f"/{SITE}/{CAMERA}.m3u8",
                                                                  f"/{OTHER}/{OTHER_CAMERA}.m3u8")))
        st = http_status(other, sslc)
        check("the playlist token replayed for another site's camera is refused", st in refused, f"(got {st})")
        # A segment URL from the playlist, then replayed for another camera's path.
        try:
            with urllib.request.urlopen(url, timeout=15, context=sslc) as resp:
                lines = [ln for ln in resp.read().decode().splitlines() if ln and not ln.startswith("#")]
        except (urllib.error.URLError, OSError):
            lines = []
        if lines:
            seg_url = lines[0] if lines[0].startswith("http") else f"{parts.scheme}://{parts.netloc}" + (
                lines[0] if lines[0].startswith("/") else os.path.dirname(parts.path) + "/" + lines[0])
            st = http_status(seg_url, sslc)
            check("a segment URL of the playlist answers 200/206", st in (200, 206), f"(got {st} {seg_url})")
            sp = urlsplit(seg_url)
            st = http_status(urlunsplit(sp._replace(path=sp.path.replace(f"/{SITE}/{CAMERA}/",
                                                                         f"/{OTHER}/{OTHER_CAMERA}/"))), sslc)
            check("a segment grant replayed for another site's camera is refused", st in refused, f"(got {st})")
            segs_path = sp.path.rsplit("/", 1)
            grant = segs_path[0].rsplit("/", 1)
            st = http_status(urlunsplit(sp._replace(path=f"{grant[0]}/{tamper(grant[1])}/{segs_path[1]}")), sslc)
            check("a tampered segment grant is refused", st in refused, f"(got {st})")
        else:
            check("the playlist lists segments", False)
    code, r = rpc(conn, methods, s + "GetPlaybackUrl", viewer,
                  {"camera": {"site": SITE, "camera": CAMERA}, "range": rng, "audit": audit, "url_ttl": "1s"})
    url = r.get("playback", {}).get("url", "")
    if code == "OK" and url:
        time.sleep(2.5)
        st = http_status(url, sslc)
        check("an expired playlist URL is refused (401/403)", st in refused, f"(got {st})")
    else:
        check("GetPlaybackUrl with a 1 s lifetime", False, f"({code} {r})")
    if len(segs) >= 2:
        urls = []
        for seg in segs[:2]:
            code, r = rpc(conn, methods, s + "GetSegment", viewer,
                          {"camera": {"site": SITE, "camera": CAMERA}, "sequence": int(next(find_key(seg, "sequence"), 0)),
                           "audit": audit, "url_ttl": "120s"})
            urls.append(r.get("media", {}).get("url", "") if code == "OK" else "")
        if all(urls):
            check("a segment's media URL answers 200", http_status(urls[0], sslc) in (200, 206))
            a, b = urlsplit(urls[0]), urlsplit(urls[1])
            if a.path != b.path:
                # Segment 1's grant (the path up to the file) with segment 2's file.
                replay = a.path.rsplit("/", 1)[0] + "/" + b.path.rsplit("/", 1)[1]
                st = http_status(urlunsplit(a._replace(path=replay)), sslc)
                # A genuine grant for a range the segment is not in: "no such segment" (404)
                # is a refusal too — nothing is served, nothing revealed.
                check("segment 1's grant replayed on segment 2's path is refused", st in (*refused, 404),
                      f"(got {st}; {replay})")
            elif a.query != b.query:
                st = http_status(urlunsplit(b._replace(query=a.query)) + "", sslc)
                # Same path: the grant is in the query; it must not open another object.
                check("segment 1's token replayed on segment 2 is refused", st in refused, f"(got {st})")
        else:
            check("GetSegment gives media URLs", False, f"({urls})")
    if bundle:
        code, r = rpc(conn, methods, s + "GetEvidenceBundle", auditor, {"bundle_id": bundle, "audit": audit,
                                                                         "url_ttl": "120s"})
        url = r.get("download", {}).get("url", "")
        check("GetEvidenceBundle as auditor@burgas gives a download URL", code == "OK" and url, f"({code})")
        if url:
            check("the bundle URL answers 200", http_status(url, sslc) == 200)
            parts = urlsplit(url)
            q = dict(parse_qsl(parts.query))
            st = http_status(urlunsplit(parts._replace(query=urlencode({**q, "token": tamper(q.get("token", "xx"))}))),
                             sslc)
            check("a tampered bundle token is refused", st in refused, f"(got {st})")
            other = parts.path.rsplit("/", 1)[0] + f"/{uuid.uuid4()}.tar"
            st = http_status(urlunsplit(parts._replace(path=other)), sslc)
            check("the bundle token replayed for another bundle is refused", st in refused + (404,), f"(got {st})")
            st = http_status(urlunsplit(parts._replace(path=parts.path.replace(f"/{SITE}/", f"/{OTHER}/"))), sslc)
            check("the bundle token replayed on another site's path is refused", st in refused + (404,),
                  f"(got {st})")
    else:
        print("    (no evidence bundle was made: bundle URLs not checked)")


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="kordon-authz-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    env.update(KORDON_LOG="info", KORDON_DEV_IDENTITY="0")
    env = ort_env(env)
    print(f"authorisation matrix (services in {work})")
    pki = make_pki(work)
    ids = identities(pki)
    observer = Identity("observer", "person", "*", "admin",
                        token=mint(pki["jwt"], "matrix-observer", {"*": ["admin"]}), subject="matrix-observer")
    by_name = {i.name: i for i in ids}
    subjects = {i.subject for i in ids}
    procs = {}
    try:
        procs, ports = start_all(args.kordon, work, pki, env)
        conn = Conn(pki)
        methods = discover(conn, ports, observer)
        services = sorted({m.split("/")[0] for m in methods})
        print(f"  reflection: {len(services)} services, {len(methods)} methods")
        unknown = sorted(m for m in methods if m.split("@")[0] not in TABLE)
        check("every method reflection shows is in the permission table", not unknown, f"(unclassified: {unknown})")
        missing = sorted(set(TABLE) - {m.split("@")[0] for m in methods})
        check("every method of the table is served", not missing, f"(not served: {missing})")

        ctx = Ctx()
        segs = wait_recorded(conn, methods, observer, ctx, time.time() + 240)
        check("both sites record (>= 3 segments of burgas/port-gate)", len(segs) >= 3, f"(got {len(segs)})")
        if len(segs) < 2:
            raise SystemExit(1)

        def us(ts):
            return json_format.ParseDict(ts, timestamp_pb2.Timestamp()).ToMicroseconds()

        ctx.start_us = us(segs[0]["range"]["start"])
        ctx.end_us = us(segs[-1]["range"]["end"])
        ctx.sequence = int(next(find_key(segs[0], "sequence"), 1))
        admin = by_name[f"admin@{SITE}"]
        ctx.objects = seed(conn, methods, observer, admin, ctx, segs)
        print(f"  seeded on {SITE}: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in ctx.objects.items()))

        # The matrix: denied calls first, with the state around them; then the allowed ones.
        plan = []
        for key, m in sorted(methods.items()):
            kind, perm = TABLE.get(key.split("@")[0], ("unknown", None))
            if kind == "unknown":
                continue
            obj = next((v for k, v in OBJECT_OF.items() if m.full.endswith(k)), None)
            seeded = bool(ctx.objects.get(obj)) if obj else True
            for ident in ids:
                plan.append((key, m, kind, ident, expect(kind, perm, ident, seeded)))
        results = {}
        before = state(conn, methods, observer, subjects)
        t_denied = time.time()
        for key, m, kind, ident, exp in plan:
            if exp != ALLOWED:
                results[(key, ident.name)] = (exp, *call(conn, m, ident, request(m, ctx, ident)))
        after = state(conn, methods, observer, subjects)
        n_denied = len(results)
        print(f"  {n_denied} denied calls in {time.time() - t_denied:.0f}s")
        a = ALERTS
        if isinstance(before[a], dict) and isinstance(after[a], dict):
            after[a] = {i: after[a].get(i) for i in before[a]}
        for k in before:
            check(f"denied calls changed nothing: {k}", before[k] == after[k],
                  f"\n      before {str(before[k])[:600]}\n      after  {str(after[k])[:600]}")
        # Allowed calls; destructive ones last (they may remove the seeded objects).
        last = ("Delete", "Remove", "Release", "Cancel")
        allowed = [p for p in plan if p[4] == ALLOWED]
        allowed.sort(key=lambda p: p[1].desc.name.startswith(last))
        for key, m, kind, ident, exp in allowed:
            results[(key, ident.name)] = (exp, *call(conn, m, ident, request(m, ctx, ident)))

        # The matrix.
        names = [i.name for i in ids]
        cols = [n.replace("@burgas", "@B").replace("@edirne", "@E").replace("operator", "oper")
                .replace("auditor", "audit").replace("service", "svc").replace("viewer", "view") for n in names]
        print()
        print(f"  {'method':52}" + "".join(f"{c:>8}" for c in cols))
        unexpected = []
        counts = collections.Counter()
        codes = collections.Counter()
        for key in sorted({k for k, _ in results}):
            row = ""
            for n in names:
                exp, code, body = results[(key, n)]
                ok = matches(exp, code)
                counts[(exp, ok)] += 1
                if exp == ALLOWED:
                    codes[code] += 1
                if not ok:
                    unexpected.append((key, n, exp, code, body.get("details", "") if body else ""))
                row += f"{SHORT.get(code, code[:2]) + ('' if ok else '!'):>8}"
            label = key.replace("kordon.", "").replace(".v1.", ".")
            print(f"  {label[:52]:52}{row}")
        total = len(results)
        rows = len({k for k, _ in results})
        print(f"\n  matrix: {rows} RPCs x {len(names)} identities = {total} calls")
        for exp in (UNAUTH, DENIED, HIDDEN, ALLOWED):
            print(f"    expected {exp:16} {counts[(exp, True)]:5} as expected, {counts[(exp, False)]:3} not")
        print("    allowed calls answered: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))
        print("  (ok served; IA/NF/FP/DE: authorised, then refused by validation, absent, unsupported or no "
              "first message in time; PD/UA refused; ! unexpected)")
        for key, n, exp, code, details in unexpected:
            print(f"    UNEXPECTED {key} as {n}: expected {exp}, got {code}: {details[:200]}")
        check(f"zero unexpected results in {total} calls", not unexpected, f"({len(unexpected)} unexpected)")

        # Lists that scope themselves: edirne's people see nothing of burgas.
        leaks = []
        n_scoped = 0
        for key, m in sorted(methods.items()):
            fields = {f.name for f in m.desc.input_type.fields}
            kind = TABLE.get(key.split("@")[0], ("?",))[0]
            if not (fields & {"site", "cameras", "camera"} or kind in ("scoped", "anysite")):
                continue
            if not (m.desc.name.startswith(("List", "Watch", "Get")) or kind in ("scoped", "anysite")):
                continue
            for n in (f"viewer@{OTHER}", f"admin@{OTHER}", f"service@{OTHER}"):
                ident = by_name[n]
                req = request(m, ctx, ident, site=OTHER)
                for f in m.desc.input_type.fields:
                    if f.name in ("site", "camera", "cameras", "rule_id"):
                        req.ClearField(f.name)
                code, body = call(conn, m, ident, req, timeout=3)
                n_scoped += 1
                seen = [v for k in ("site", "owner_site") for v in find_key(body or {}, k) if v == SITE]
                if seen:
                    leaks.append((key, n, code, json.dumps(body)[:300]))
        for key, n, code, body in leaks:
            print(f"    LEAK {key} as {n}: {code} {body}")
        check(f"lists without a site filter show edirne's people nothing of burgas ({n_scoped} calls)", not leaks)

        http_checks(conn, methods, by_name[f"viewer@{SITE}"], by_name[f"auditor@{SITE}"], ctx, pki, segs,
                    ctx.objects.get("bundle"))
        dead = [n for n, p in procs.items() if p.poll() is not None]
        check("every process is still running", not dead, f"(exited: {dead})")
    finally:
        stop(list(procs.values()))
    print(f"  took {time.time() - t0:.0f}s")
    print(summary())
    if failed() or args.keep:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed() else 0)


if __name__ == "__main__":
    main()
