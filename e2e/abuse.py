#!/usr/bin/env python3
"""Abuse: hostile names, oversized and deeply nested messages, thousands of watch streams.

Runs camsim (two cameras) and `kordon standalone` (all five services on one listener, local files,
SQLite, the development identity: every call is an admin of every site, so what answers is
validation, not authorisation) on free loopback ports, waits until burgas/port-gate has recorded,
then:

  1. names: every RPC of every service from reflection; each string field that names something
     (site, camera, object key, profile, rule, case, ids, cursors, zones, classes ...) anywhere in
     the request, one at a time, gets each hostile value (`../x`, `a/../../x`, `/x`, `%2e%2e%2f`,
     a NUL, a newline, 10,000 characters, `.`, `..`, empty, a backslash, a slash, a Cyrillic
     lookalike of `burgas`, a division slash) in an otherwise ordinary request (authz_matrix's
     `fill`, with FIXES where that one is refused for a reason of its own). Expected: a clear
     answer (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, OUT_OF_RANGE, PERMISSION_DENIED ...,
     or OK for reads and free text), never INTERNAL, UNKNOWN or UNAVAILABLE, never a hang; a call
     that would create something (Register*, Create*, Apply*, Submit*, Export*, Record* ...) with
     a hostile site, camera, object key or profile is refused. Afterwards every file under the
     objects root must match the key layout of crates/objects (segments, stills, renditions,
     exports, evidence and partner bundles) of a configured camera, and no path anywhere near the data
     directory (nor /, /tmp, the working directory) carries the run's marker;
  2. oversized: a request of 5 MiB and one of 64 MiB (the decode limit is tonic's 4 MiB) are
     refused naming the limit (tonic: OUT_OF_RANGE); 64 KiB of metadata gets some answer; the next ordinary call is served;
  3. nested: 100,000 nested start-group tags (unknown and known field numbers) and 10,000
     nested length-delimited fields, raw bytes through an identity serializer, to one method of
     each service: a decode error (INTERNAL is what gRPC prescribes for a request that does not
     parse; its message must say so) or an answer; no crash;
  4. watch streams: `--streams` of each of WatchAlerts, WatchDetections, WatchCameraStatus and
     WatchJob (4,400 by default) over connections of at most 100 streams. Each is served or
     RESOURCE_EXHAUSTED with a message naming the limit; RSS stays under `--max-rss-growth-mib`
     above what it was; a unary call is answered while they are open (its latency is printed);
     once they are closed, kordon_grpc_server_watch_streams and kordon_alerting_watch_subscribers
     return to 0 and a new watch of each is served.
The process must be running after each part. Prints `e2e: N passed, M failed`.

Run: python e2e/abuse.py --kordon target/debug/kordon
"""

import argparse
import asyncio
import collections
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from common import check, failed, free_ports, stop, summary, wait_port

sys.path.insert(0, os.path.dirname(__file__))
from authz_matrix import CAMERA, OTHER, OTHER_CAMERA, SCRATCH_CAMERA, SITE, SKIP_SERVICES, Ctx, fill  # noqa: E402
from detection_check import ort_env  # noqa: E402

# Cameras standalone records here (camsim index -> site, camera); pier-2 records without detection.
CAMERAS = [(SITE, CAMERA, 1), (SITE, "pier-2", 2), (OTHER, OTHER_CAMERA, 2)]
# Codes that are never a clear answer to bad input.
BAD_CODES = {"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS", "UNIMPLEMENTED"}
# Methods whose OK means something was created or changed.
WRITES = ("Register", "Create", "Set", "Apply", "Submit", "Export", "Request", "Record", "Update", "Put",
          "Decide", "Receive", "Exchange", "Acknowledge", "Hold", "Resolve")
WATCHES = {
    "WatchAlerts": "kordon.alerting.v1.AlertingService",
    "WatchDetections": "kordon.detection.v1.DetectionService",
    "WatchCameraStatus": "kordon.ingest.v1.IngestService",
    "WatchJob": "kordon.transcode.v1.TranscodeService",
}
# A decode error as tonic words it (INTERNAL, as gRPC's status code table prescribes).
DECODE_ERROR = re.compile(r"decode|recursion|wire type|buffer underflow|invalid", re.I)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def start(kordon, work, env):
    """camsim and standalone; (procs, grpc port, admin port, data dir)."""
    rtsp, control, g, a, h = free_ports(5)
    procs = {"camsim": subprocess.Popen(
        [kordon, "camsim", "--cameras", "2", "--listen", f"127.0.0.1:{rtsp}", "--control-listen",
         f"127.0.0.1:{control}", "--source", "clip"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "camsim.log"), "w"))}
    wait_port(control, timeout=300)
    road = {"zones": [{"name": "road", "area": [[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]]}]}
    sites = collections.defaultdict(list)
    for site, cam, i in CAMERAS:
        c = {"name": cam, "record": f"rtsp://127.0.0.1:{rtsp}/cam{i}/main"}
        if cam == CAMERA:
            c.update(detect=f"rtsp://127.0.0.1:{rtsp}/cam{i}/sub", detection=road)
        sites[site].append(c)
    config = {
        "sites": [{"name": s, "cameras": cams} for s, cams in sites.items()],
        # Transcode reads footage from a storage nobody serves: a job stays queued (an outage,
        # retried with a growing wait) for as long as WatchJob streams need one that runs on.
        "transcode": {"storage": {"url": "http://127.0.0.1:9"}, "max_attempts": 20},
    }
    cfg = os.path.join(work, "standalone.yaml")
    with open(cfg, "w") as f:
        json.dump(config, f)  # YAML is a superset of JSON
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "standalone.log"), "w")
    procs["standalone"] = subprocess.Popen(
        [kordon, "standalone", "--config", cfg, "--data-dir", data, "--grpc-listen", f"127.0.0.1:{g}",
         "--admin-listen", f"127.0.0.1:{a}", "--http-listen", f"127.0.0.1:{h}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    ch = grpc.insecure_channel(f"127.0.0.1:{g}")
    while time.time() < deadline and procs["standalone"].poll() is None:
        try:
            st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2).status
            if st == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError:
            time.sleep(0.5)
    ch.close()
    if procs["standalone"].poll() is not None:
        raise SystemExit(f"kordon standalone exited {procs['standalone'].returncode}; see {log.name}")
    return procs, g, a, data


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def metrics(admin_port):
    """{name{labels}: value} from the admin port's /metrics."""
    out = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, _, v = line.rpartition(" ")
                    try:
                        out[k] = float(v)
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def healthy(port):
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            return st == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def alive(procs, port, what):
    check(f"{what}: standalone still running and SERVING",
          procs["standalone"].poll() is None and healthy(port),
          f"(exit {procs['standalone'].poll()})")


# ---------------------------------------------------------------------------------------------
# Calling
# ---------------------------------------------------------------------------------------------

class Method:
    def __init__(self, m):
        self.desc = m
        self.full = f"{m.containing_service.full_name}/{m.name}"
        self.req_cls = message_factory.GetMessageClass(m.input_type)
        self.resp_cls = message_factory.GetMessageClass(m.output_type)
        self.streaming = m.server_streaming


def discover(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    names = []
    for resp in stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                          timeout=10):
        names = [s.name for s in resp.list_services_response.service]
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    return {m.full: m for s in names if not s.startswith(SKIP_SERVICES)
            for m in map(Method, pool.FindServiceByName(s).methods)}


def call(channel, method, req, timeout=5.0):
    """(code name, details or response dict). A server stream: its first message; a stream
    that sends nothing within `timeout` is `OPEN` (served, nothing to say yet)."""
    path = f"/{method.full}"
    ser = (lambda b: b) if isinstance(req, bytes) else method.req_cls.SerializeToString
    try:
        if method.streaming:
            it = channel.unary_stream(path, request_serializer=ser, response_deserializer=method.resp_cls.FromString)(
                req, timeout=timeout)
            try:
                first = next(it)
            except StopIteration:
                return "OK", {}
            finally:
                it.cancel()
            return "OK", json_format.MessageToDict(first, preserving_proto_field_name=True)
        resp = channel.unary_unary(path, request_serializer=ser, response_deserializer=method.resp_cls.FromString)(
            req, timeout=timeout)
        return "OK", json_format.MessageToDict(resp, preserving_proto_field_name=True)
    except grpc.RpcError as e:
        if method.streaming and e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return "OPEN", ""
        return e.code().name, e.details() or ""


def ts(us):
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(int(us))
    return t.ToJsonString()


def segments(channel, methods, site, camera):
    m = methods["kordon.storage.v1.StorageService/ListSegments"]
    now = int(time.time() * 1e6)
    req = json_format.ParseDict({"camera": {"site": site, "camera": camera},
                                 "range": {"start": ts(now - 600_000_000), "end": ts(now)},
                                 "audit": {"reason": "abuse (e2e): setup"}, "page": {"page_size": 100}},
                                m.req_cls())
    code, r = call(channel, m, req, timeout=10)
    return r.get("segments", []) if code == "OK" else []


# ---------------------------------------------------------------------------------------------
# 1. Names
# ---------------------------------------------------------------------------------------------

NAMING = {"site", "camera", "name", "object_key", "profile", "rendition_profile", "case_id", "zone", "zones",
          "line", "lines", "classes", "class_label", "cursor", "page_token", "key", "id", "source", "recipient",
          "principal", "subject", "content_type", "replica"}
# A hostile value here must never create anything.
STRICT = {"site", "camera", "object_key", "profile", "rendition_profile"}


def naming(f):
    return f.type == descriptor.FieldDescriptor.TYPE_STRING and (
        f.name in NAMING or f.name.endswith(("_site", "_id")))


def strict(f):
    return f.name in STRICT or f.name.endswith("_site")


def name_paths(desc, prefix=(), seen=()):
    """Paths (tuples of field descriptors) to every naming string field of a request."""
    for f in desc.fields:
        if f.message_type is not None:
            mt = f.message_type
            if mt.GetOptions().map_entry or mt.full_name.startswith("google.protobuf.") or mt.full_name in seen:
                continue
            if len(prefix) < 4:
                yield from name_paths(mt, prefix + (f,), seen + (mt.full_name,))
        elif naming(f):
            yield prefix + (f,)


def put(body, path, v):
    """Sets the field at `path` in a ParseDict body, creating what is missing; a oneof member on
    the way replaces its siblings."""
    d = body
    for i, f in enumerate(path):
        if f.containing_oneof is not None:
            for sib in f.containing_oneof.fields:
                if sib.name != f.name:
                    d.pop(sib.name, None)
        last = i == len(path) - 1
        if last:
            d[f.name] = [v] if f.is_repeated else v
            return
        cur = d.get(f.name)
        if f.is_repeated:
            if not isinstance(cur, list) or not cur or not isinstance(cur[0], dict):
                cur = [{}]
                d[f.name] = cur
            d = cur[0]
        else:
            if not isinstance(cur, dict):
                cur = {}
                d[f.name] = cur
            d = cur


def hostile_values(marker):
    return [
        ("../x", f"../{marker}"),
        ("a/../../x", f"a/../../{marker}"),
        ("/abs", f"/{marker}-abs"),
        ("%2e%2e%2f", f"%2e%2e%2f{marker}"),
        ("NUL", f"{marker}\x00x"),
        ("10,000 chars", marker + "x" * 10_000),
        (".", "."),
        ("..", ".."),
        ("empty", ""),
        ("newline", f"{marker}\nx"),
        ("backslash", f"..\\{marker}"),
        ("slash", f"{marker}/x"),
        ("lookalike", "burg\u0430s"),  # Cyrillic а
        ("division slash", f"..\u2215{marker}"),
    ]


# Where the generic request (authz_matrix.fill) is refused for a reason of its own, the value
# that makes it ordinary: method name -> {field name anywhere in the request: value}.
# A callable gives each request its own value (rule names are unique per site).
FIXES = {
    "CreateRule": {"name": lambda: f"abuse-{uuid.uuid4().hex[:12]}"},
    "UpdateRule": {"name": lambda: f"abuse-{uuid.uuid4().hex[:12]}"},
    "ApplyCameras": {"segment_duration": "6s", "label": "person",
                     "area": {"points": [{"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 0.0}, {"x": 1.0, "y": 1.0}]},
                     "b": {"x": 1.0, "y": 1.0}, "masks": []},
    "ExportEvidence": {"time_zone": "", "privacy_masks": []},
    "ListRecordings": {"merge_tolerance": "1s"},
    "RegisterRendition": {"profile": "abuse-360p", "size_bytes": 2000},
    "RegisterSegment": {"size_bytes": 2000},
}
# Every request is a new one (a reused request_id with other values is ALREADY_EXISTS).
FIX_ALL = {"request_id": lambda: str(uuid.uuid4())}


def fix(body, values):
    if isinstance(body, dict):
        for k in list(body):
            if k in values:
                v = values[k]
                body[k] = v() if callable(v) else json.loads(json.dumps(v))
            else:
                fix(body[k], values)
    elif isinstance(body, list):
        for v in body:
            fix(v, values)
    return body


def ordinary_request(m, ctx):
    ctx.method, ctx.site, ctx.camera = m.full, SITE, CAMERA
    return fill(m.desc.input_type, ctx)


def names(channel, methods, ctx, marker, workers):
    print("names: hostile values in every naming field of every RPC")
    plan = []
    for full, m in sorted(methods.items()):
        base = ordinary_request(m, ctx)
        for path in name_paths(m.desc.input_type):
            for label, v in hostile_values(marker):
                body = fix(json.loads(json.dumps(base)), {**FIX_ALL, **FIXES.get(m.desc.name, {})})
                put(body, path, v)
                try:
                    req = json_format.ParseDict(body, m.req_cls())
                except json_format.ParseError as e:
                    print(f"    (skipped {full} {'.'.join(f.name for f in path)}: {e})")
                    continue
                plan.append((m, path, label, req))
    # The ordinary request each hostile one is made from: where it is refused already, the
    # hostile values there show only that nothing breaks, not that the field is checked.
    refused_base = []
    for full, m in sorted(methods.items()):
        if any(p[0] is m for p in plan):
            body = fix(ordinary_request(m, ctx), {**FIX_ALL, **FIXES.get(m.desc.name, {})})
            code, detail = call(channel, m, json_format.ParseDict(body, m.req_cls()),
                                timeout=3.0 if m.streaming else 15.0)
            if code not in ("OK", "OPEN"):
                refused_base.append(f"{m.desc.name} {code} ({str(detail)[:80]})")
    print(f"  ordinary requests refused before any hostile value ({len(refused_base)}): " + "; ".join(refused_base))
    n_fields = len({(m.full, tuple(f.name for f in p)) for m, p, _, _ in plan})
    print(f"  {len(methods)} methods, {n_fields} naming fields, {len(plan)} calls")
    t0 = time.time()

    def one(item):
        m, path, label, req = item
        return item, call(channel, m, req, timeout=3.0 if m.streaming else 15.0)

    results = []
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(one, plan))
    print(f"  {len(results)} calls in {time.time() - t0:.0f}s")
    codes = collections.Counter()
    bad, created = [], []
    unusual = {}
    per_method = collections.defaultdict(collections.Counter)
    for (m, path, label, _), (code, detail) in results:
        codes[code] += 1
        per_method[m.full][code] += 1
        field = ".".join(f.name for f in path)
        if code not in ("OK", "OPEN", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "PERMISSION_DENIED"):
            unusual.setdefault((m.full, code), (field, label, str(detail)[:300]))
        if code in BAD_CODES or (code == "DEADLINE_EXCEEDED" and not m.streaming):
            bad.append((m.full, field, label, code, str(detail)[:200]))
        elif (code == "OK" and strict(path[-1]) and m.desc.name.startswith(WRITES)
              # Empty is proto3's unset: "none named" (a site-wide retention policy, a rule's
              # camera on the rule's own site); no key can be made of it.
              and label != "empty"):
            created.append((m.full, field, label, str(detail)[:200]))
    for full in sorted(per_method):
        print(f"    {full.replace('kordon.', '').replace('.v1.', '.'):58} "
              + ", ".join(f"{c} {n}" for c, n in per_method[full].most_common()))
    print("  answered: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))
    for (full, code), (field, label, detail) in sorted(unusual.items()):
        print(f"    {code} {full} {field}={label!r}: {detail}")
    for b in bad[:40]:
        print(f"    BAD {b[0]} {b[1]}={b[2]!r}: {b[3]} {b[4]}")
    check(f"no hostile name answered INTERNAL/UNKNOWN/UNAVAILABLE or hung ({len(results)} calls)", not bad,
          f"({len(bad)} bad)")
    for c in created[:40]:
        print(f"    ACCEPTED {c[0]} {c[1]}={c[2]!r}: {c[3]}")
    check("no write accepted a hostile site, camera, object key or profile", not created,
          f"({len(created)} accepted)")
    return results


# Object keys (crates/objects/src/key.rs, storage's evidence and partner bundles).
N = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
HOUR = r"\d{4}/\d{2}/\d{2}/\d{2}"
LAYOUT = [
    re.compile(rf"^(?P<site>{N})/(?P<camera>{N})/{HOUR}/\d+-[0-9a-f]{{16}}\.mp4$"),
    re.compile(rf"^(?P<site>{N})/(?P<camera>{N})/(snapshots|thumbnails)/{HOUR}/\d+-[0-9a-f]{{16}}\.jpg$"),
    re.compile(rf"^(?P<site>{N})/(?P<camera>{N})/exports/{HOUR}/\d+-[0-9a-f]{{16}}\.mp4$"),
    re.compile(rf"^(?P<site>{N})/(?P<camera>{N})/renditions/{N}/{HOUR}/\d+-[0-9a-f]{{16}}\.mp4$"),
    re.compile(rf"^\.evidence/(?P<site>{N})/[0-9a-f-]{{36}}\.tar$"),
    re.compile(rf"^partners/(?P<site>{N})/grants/{N}\.tar$"),
]


STAGING = re.compile(r"^(.*)#\d+$")


def layout_checks(work, data, marker):
    root = os.path.join(data, "media")
    cams = {(s, c) for s, c, _ in CAMERAS}
    sites = {s for s, _, _ in CAMERAS}
    objects, stray = 0, []
    for dirpath, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            objects += 1
            m = next((p.match(rel) for p in LAYOUT if p.match(rel)), None)
            ok = m is not None and m.group("site") in sites and (
                "camera" not in m.groupdict() or (m.group("site"), m.group("camera")) in cams)
            if not ok:
                stray.append(rel)
    # An upload in flight is a staging file `<key>#<n>` beside its key (object_store's local
    # store renames it into place when written): stray only if it is still there a moment later.
    staging = [s for s in stray if STAGING.match(s) and any(p.match(STAGING.match(s).group(1)) for p in LAYOUT)]
    if staging:
        time.sleep(3)
        gone = [s for s in staging if not os.path.exists(os.path.join(root, s))]
        print(f"  {len(gone)} upload(s) in flight when scanned (staging files since renamed): {gone[:3]}")
        stray = [s for s in stray if s not in gone]
    print(f"  objects root: {objects} files")
    for s in stray[:20]:
        print(f"    STRAY {s!r}")
    check(f"every object under the objects root follows the key layout of a configured camera ({objects})",
          objects > 0 and not stray, f"({len(stray)} stray)")
    # The marker anywhere a hostile name could have reached: the work directory (recursively),
    # the ancestors of the data directory, /, /tmp and the working directory (not recursively).
    found = []
    for dirpath, dirs, files in os.walk(work):
        found += [os.path.join(dirpath, x) for x in dirs + files if marker in x]
    shallow = {"/", tempfile.gettempdir(), os.getcwd()}
    d = data
    while d != os.path.dirname(d):
        d = os.path.dirname(d)
        shallow.add(d)
    for d in shallow:
        try:
            found += [os.path.join(d, x) for x in os.listdir(d) if marker in x]
        except OSError:
            pass
    for f in found[:20]:
        print(f"    ESCAPED {f!r}")
    check(f"no file or directory anywhere near the data carries a hostile name ({marker})", not found)


# ---------------------------------------------------------------------------------------------
# 2, 3. Oversized and nested messages
# ---------------------------------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ordinary(channel, methods):
    m = methods["kordon.alerting.v1.AlertingService/ListRules"]
    return call(channel, m, m.req_cls(), timeout=30)[0]


def oversized(channel, methods):
    print("oversized messages")
    m = methods["kordon.alerting.v1.AlertingService/ListRules"]
    for mib in (5, 64):
        n = mib << 20
        raw = bytes([15 << 3 | 2]) + varint(n) + b"\0" * n  # an unknown field, n bytes long
        code, detail = call(channel, m, raw, timeout=60)
        # tonic answers OUT_OF_RANGE ("decoded message length too large ... the limit is ...").
        check(f"a {mib} MiB request is refused (RESOURCE_EXHAUSTED or OUT_OF_RANGE) naming the limit",
              code in ("RESOURCE_EXHAUSTED", "OUT_OF_RANGE") and "limit" in detail, f"(got {code} {detail[:200]})")
        print(f"    {code}: {detail[:160]}")
        code = ordinary(channel, methods)
        check(f"an ordinary call right after the {mib} MiB request is served", code == "OK", f"(got {code})")
    try:
        channel.unary_unary(f"/{m.full}", request_serializer=lambda b: b, response_deserializer=lambda b: b)(
            b"", timeout=30, metadata=[("x-abuse", "a" * 65536)])
        code, detail = "OK", ""
    except grpc.RpcError as e:
        code, detail = e.code().name, e.details() or ""
    print(f"    64 KiB of metadata: {code} {detail[:160]}")
    code = ordinary(channel, methods)
    check("an ordinary call right after 64 KiB of metadata is served", code == "OK", f"(got {code})")


def nested(channel, methods):
    print("deeply nested messages")
    targets = ["kordon.alerting.v1.AlertingService/ListRules", "kordon.storage.v1.StorageService/ListSegments",
               "kordon.ingest.v1.IngestService/ListCameraStatus", "kordon.detection.v1.DetectionService/ListDetections",
               "kordon.transcode.v1.TranscodeService/ListJobs"]
    chain = b""
    for _ in range(10_000):
        chain = bytes([15 << 3 | 2]) + varint(len(chain)) + chain
    bodies = [
        ("100,000 nested start-groups, unknown field", bytes([15 << 3 | 3]) * 100_000),
        ("100,000 nested start-groups, field 1", bytes([1 << 3 | 3]) * 100_000),
        ("100,000 nested start-groups, then as many end-groups",
         bytes([15 << 3 | 3]) * 100_000 + bytes([15 << 3 | 4]) * 100_000),
        ("10,000 nested length-delimited fields", chain),
    ]
    for full in targets:
        m = methods.get(full)
        if m is None:
            check(f"{full} is served", False)
            continue
        for label, raw in bodies:
            code, detail = call(channel, m, raw, timeout=30)
            clear = code not in BAD_CODES or (code == "INTERNAL" and DECODE_ERROR.search(detail or ""))
            check(f"{m.desc.name}: {label}: {code}", clear and code != "UNAVAILABLE", f"({str(detail)[:200]})")
            if code != "OK":
                print(f"    {str(detail)[:160]}")
        check(f"{m.desc.name}: an ordinary call right after is served", ordinary(channel, methods) == "OK")


# ---------------------------------------------------------------------------------------------
# 4. Watch streams
# ---------------------------------------------------------------------------------------------

def watch_requests(methods, job_id):
    quiet = [{"site": OTHER, "camera": OTHER_CAMERA}]  # no detection, no rules there
    bodies = {
        "WatchAlerts": {"site": OTHER},
        "WatchDetections": {"cameras": quiet},
        "WatchCameraStatus": {"cameras": quiet},
        "WatchJob": {"job_id": job_id},
    }
    out = {}
    for name, svc in WATCHES.items():
        m = methods[f"{svc}/{name}"]
        out[name] = (f"/{m.full}", json_format.ParseDict(bodies[name], m.req_cls()).SerializeToString())
    return out


def watch_gauges(admin_port):
    mt = metrics(admin_port)
    g = {name: mt.get(f'kordon_grpc_server_watch_streams{{grpc_method="{name}"}}') for name in WATCHES}
    g["alerting subscribers"] = mt.get("kordon_alerting_watch_subscribers")
    return g


async def storm(port, admin_port, pid, reqs, per_method, per_conn, max_growth_mib, probe_method):
    """Opens per_method streams of each watch; returns nothing, records checks."""
    rss0 = rss_kib(pid)
    # What is open before: standalone's alerting follows its detection through WatchDetections.
    before = watch_gauges(admin_port)
    print(f"    gauges before: {before}")
    plan = [(name, path, body) for name, (path, body) in reqs.items() for _ in range(per_method)]
    # Interleave methods so each connection carries all four.
    plan = [plan[i] for k in range(per_method) for i in range(k, len(plan), per_method)]
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.keepalive_time_ms", 60_000)]
    channels, calls, state = [], [], {}
    t0 = time.time()

    async def follow(i, c):
        try:
            await c.initial_metadata()
            state[i] = ["headers", None, 0]
            async for _ in c:
                state[i][2] += 1
            state[i][:2] = ["ended", "OK"]
        except grpc.aio.AioRpcError as e:
            state[i] = ["ended", e.code().name, e.details() or ""]
        except asyncio.CancelledError:
            state.setdefault(i, ["cancelled", None, 0])

    tasks = []
    for i, (name, path, body) in enumerate(plan):
        if i % per_conn == 0:
            channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts))
        c = channels[-1].unary_stream(path, request_serializer=None, response_deserializer=None)(body)
        calls.append(c)
        tasks.append(asyncio.create_task(follow(i, c)))
        if i % 200 == 199:
            await asyncio.sleep(0)  # let the event loop send them
    deadline = time.time() + 180
    while time.time() < deadline and len(state) < len(plan):
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # refusals that arrived with their headers
    opened = time.time() - t0
    rss1 = rss_kib(pid)
    print(f"  {len(plan)} streams over {len(channels)} connections answered in {opened:.0f}s "
          f"({len(state)} answered)")
    by = collections.defaultdict(collections.Counter)
    msgs = {}
    for i, (name, _, _) in enumerate(plan):
        st = state.get(i)
        if st is None:
            by[name]["no answer"] += 1
        elif st[0] == "headers":
            by[name]["open"] += 1
        else:
            by[name][st[1]] += 1
            if st[1] != "OK":
                msgs.setdefault((name, st[1]), st[2])
    for name in WATCHES:
        print(f"    {name:18} " + ", ".join(f"{c} {n}" for c, n in by[name].most_common()))
    for (name, code), msg in sorted(msgs.items()):
        print(f"      {name} {code}: {msg[:200]}")
    for name in WATCHES:
        c = by[name]
        others = {k: v for k, v in c.items() if k not in ("open", "RESOURCE_EXHAUSTED")}
        check(f"{name}: each of {per_method} streams is served or RESOURCE_EXHAUSTED", not others, f"({dict(c)})")
        if c["RESOURCE_EXHAUSTED"]:
            msg = msgs.get((name, "RESOURCE_EXHAUSTED"), "")
            check(f"{name}: the refusal names the limit ({c['open']} open)", re.search(r"\d", msg) and name in msg,
                  f"({msg!r})")
        else:
            # Every Watch* RPC is bounded (kordon_runtime::watch, 1,024 per RPC and process).
            check(f"{name}: all {c['open']} served: its limit must be at least {per_method}", per_method <= 1024)
    gauges = watch_gauges(admin_port)
    print(f"    gauges while open: {gauges}")
    growth = (rss1 - rss0) / 1024
    print(f"  RSS {rss0 / 1024:.0f} MiB before, {rss1 / 1024:.0f} MiB with the streams open "
          f"(+{growth:.0f} MiB, {max(rss1 - rss0, 0) / max(sum(by[n]['open'] for n in WATCHES), 1):.1f} KiB per open stream)")
    check(f"RSS grows by less than {max_growth_mib} MiB with the streams open", growth < max_growth_mib,
          f"(+{growth:.0f} MiB)")
    # A unary call while they are open, on a connection of its own.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
        t = time.time()
        try:
            await ch.unary_unary(probe_method, request_serializer=None, response_deserializer=None)(b"", timeout=60)
            code = "OK"
        except grpc.aio.AioRpcError as e:
            code = e.code().name
        print(f"  a unary call while they are open: {code} in {(time.time() - t) * 1000:.0f} ms")
        check("a unary call is answered while the streams are open", code == "OK", f"(got {code})")
    # Close them all.
    for c in calls:
        c.cancel()
    for t_ in tasks:
        t_.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ch in channels:
        await ch.close()
    deadline = time.time() + 60
    # A label appears with its method's first watch: absent before means 0.
    bounded = ("WatchAlerts", "WatchDetections", "WatchJob")
    while time.time() < deadline:
        gauges = watch_gauges(admin_port)
        if all(gauges.get(n) == (before.get(n) or 0) for n in (*bounded, "alerting subscribers")):
            break
        await asyncio.sleep(1)
    print(f"    gauges after closing: {gauges}")
    check("after closing, WatchAlerts' subscriptions end (kordon_alerting_watch_subscribers as before)",
          gauges.get("alerting subscribers") == (before.get("alerting subscribers") or 0),
          f"({gauges['alerting subscribers']})")
    check(f"after closing, kordon_grpc_server_watch_streams is as before for {', '.join(bounded)}",
          all(gauges.get(n) == (before.get(n) or 0) for n in bounded), f"({gauges})")
    rss2 = rss_kib(pid)
    print(f"  RSS after closing: {rss2 / 1024:.0f} MiB")
    # Each watch is served again.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
        for name, (path, body) in reqs.items():
            c = ch.unary_stream(path, request_serializer=None, response_deserializer=None)(body)
            try:
                await asyncio.wait_for(c.initial_metadata(), 30)
                await asyncio.sleep(0.5)
                ok = not c.done() or (await c.code()) == grpc.StatusCode.OK
            except (asyncio.TimeoutError, grpc.aio.AioRpcError):
                ok = False
            c.cancel()
            check(f"{name}: a new watch is served after the storm", ok)


def watches(channel, methods, port, admin_port, pid, per_method, per_conn, max_growth_mib, ctx):
    print(f"watch streams: {per_method} of each of {', '.join(WATCHES)}")
    m = methods["kordon.transcode.v1.TranscodeService/SubmitJob"]
    body = {"spec": {"thumbnails": {"camera": {"site": SITE, "camera": CAMERA},
                                    "range": {"start": ts(ctx.start_us), "end": ts(ctx.end_us)}, "width": 160}},
            "audit": {"reason": "abuse (e2e): a job to watch"}, "request_id": str(uuid.uuid4())}
    code, r = call(channel, m, json_format.ParseDict(body, m.req_cls()), timeout=30)
    job_id = (r.get("job") or {}).get("id") if code == "OK" else None
    check("a transcode job to watch is submitted", bool(job_id), f"({code} {r})")
    if not job_id:
        return
    reqs = watch_requests(methods, job_id)
    asyncio.run(storm(port, admin_port, pid, reqs, per_method, per_conn, max_growth_mib,
                      "/kordon.alerting.v1.AlertingService/ListRules"))
    m = methods["kordon.transcode.v1.TranscodeService/CancelJob"]
    call(channel, m, json_format.ParseDict({"job_id": job_id}, m.req_cls()), timeout=30)


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--streams", type=int, default=1100, help="watch streams of each of the four methods")
    ap.add_argument("--per-connection", type=int, default=100, help="streams per HTTP/2 connection")
    ap.add_argument("--max-rss-growth-mib", type=int, default=512)
    ap.add_argument("--workers", type=int, default=8, help="threads calling in the names part")
    ap.add_argument("--only", choices=["names", "oversized", "nested", "watches"], action="append")
    args = ap.parse_args()
    parts = set(args.only or ["names", "oversized", "nested", "watches"])
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="kordon-abuse-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    env.update(KORDON_LOG="warn")
    env = ort_env(env)
    marker = f"kabuse{uuid.uuid4().hex[:8]}"
    print(f"abuse (standalone in {work}; marker {marker})")
    procs = {}
    try:
        procs, port, admin_port, data = start(os.path.abspath(args.kordon), work, env)
        pid = procs["standalone"].pid
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1),
                                                                       ("grpc.max_receive_message_length", -1)])
        methods = discover(channel)
        print(f"  reflection: {len({m.split('/')[0] for m in methods})} services, {len(methods)} methods")
        deadline = time.time() + 240
        segs = []
        while time.time() < deadline:
            segs = segments(channel, methods, SITE, CAMERA)
            if len(segs) >= 2:
                break
            time.sleep(3)
        check("burgas/port-gate records (>= 2 segments)", len(segs) >= 2, f"(got {len(segs)})")
        ctx = Ctx()

        def us(t):
            return json_format.ParseDict(t, timestamp_pb2.Timestamp()).ToMicroseconds()

        if segs:
            ctx.start_us, ctx.end_us = us(segs[0]["range"]["start"]), us(segs[-1]["range"]["end"])
            ctx.sequence = int(segs[0].get("sequence", 1))
        print(f"  RSS at start: {rss_kib(pid) / 1024:.0f} MiB")
        if "names" in parts:
            names(channel, methods, ctx, marker, args.workers)
            alive(procs, port, "names")
            layout_checks(work, data, marker)
        if "oversized" in parts:
            oversized(channel, methods)
            alive(procs, port, "oversized")
        if "nested" in parts:
            nested(channel, methods)
            alive(procs, port, "nested")
        if "watches" in parts:
            watches(channel, methods, port, admin_port, pid, args.streams, args.per_connection,
                    args.max_rss_growth_mib, ctx)
            alive(procs, port, "watch streams")
        channel.close()
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
