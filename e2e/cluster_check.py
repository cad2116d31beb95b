#!/usr/bin/env python3
"""Two Kordon installations on a real kube-apiserver, every process from the Kordon image.

The control plane is the one scripts/kube.sh starts (etcd + kube-apiserver, RBAC, no kubelet);
kubelet.py plays the node: it runs the pods of the StatefulSets and Deployments there from the
image's root filesystem (as a container runtime would: read-only root, uid 65532, no
capabilities, a network namespace per pod, the Secrets and ConfigMaps they mount). The object
store is the Ceph RGW of scripts/services.sh; the cameras are two `kordon camsim` (seven SMPTE
test patterns, one the real street clip), run from the image too, outside the "cluster".

As a platform engineer, an SRE, officers and auditors of both sites would:

  1. `helm install` of charts/kordon in two namespaces, a Bulgarian (burgas) and a Turkish
     (edirne) installation, each operator watching its own namespace with the chart's Role and
     the in-cluster service account token; then `kubectl apply` of each Site (own bucket, own
     CA issued by its operator, its identity provider's key for people's tokens, its partner
     link's names) and eight Cameras, four per site, one on the real clip with detection.
     `kubectl get sites,cameras` shows them Ready and Recording, and every camera's footage is
     listed by the image's CLI (a site admin's certificate, issued from the site CA). Then the
     partner agreement: each site's auditor (a token, no certificate) reads the site's evidence
     key with `kordon audit verify`; each side puts the other's CA certificate in a ConfigMap
     and applies its Partner (burgas shares port-gate's high alerts and footage on request);
     `kubectl get partners` shows both Agreed.
  2. A person in the real clip enters burgas/port-gate's zone `road`: the AlertRule's alert
     reaches the site's MQTT subscriber (Mosquitto, an `alertSinks` entry) on both topics and
     the duty desk's webhook (HTTPS with the desk's private CA, deliveries signed), and
     the partner edirne, whose officer acknowledges it; burgas shows it acknowledged by
     edirne/<officer>.
  3. `kubectl scale site/burgas --replicas=3`: the third ingest pod starts, cameras move to it,
     and no camera has a gap longer than one segment.
  4. The edirne officer requests port-gate footage of the alert's minute (case, legal basis,
     reason); a burgas officer approves; edirne downloads the bundle, and `kordon evidence
     verify` passes offline with burgas's pinned key (and not with another).
  5. Each site's auditor lists the access log: the reads, the alert's forward and receipt, the
     request, decision and download with identity, reason and case; `kordon audit verify`
     passes at both.
  6. An ingest pod's process is SIGKILLed; the kubelet restarts it and its cameras record
     again, each with exactly one `ingest restart` gap, starting where the kill struck and no
     longer than one segment: the restarted replica recovers the open segment up to its last
     whole fragment and resumes the cameras it was last given without waiting for the operator.

Needs root (network namespaces, mounts, chroot), `eval "$(scripts/kube.sh env)"` and
`eval "$(scripts/services.sh env)"`. Prints `e2e: N passed, M failed`.
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import tempfile
import time
import traceback

import kubelet
import oci
from common import check, failed, free_ports, mint_jwt, stop, summary, version

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SEGMENT = 6  # the chart's default segment length
STATUS_INTERVAL = 5  # the operator's (helm value operator.statusInterval)
T0 = time.time()


class Abort(Exception):
    """A step failed so that the later ones cannot run."""


def say(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)



def sh(args, input=None, check_rc=True, timeout=120):
    p = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-1500:]}")
    return p


def kubectl(*args, input=None, check_rc=True):
    return sh(["kubectl", *args], input=input, check_rc=check_rc)


def eventually(what, fn, timeout, every=2.0):
    """fn() until it returns something true; None after `timeout` s."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            say(f"    gave up waiting for {what} after {timeout} s")
            return None
        time.sleep(every)


def condition(obj, type_):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return {}


def make_bucket(name):
    endpoint = os.environ["KORDON_TEST_S3_ENDPOINT"]
    key, secret = os.environ["KORDON_TEST_S3_ACCESS_KEY_ID"], os.environ["KORDON_TEST_S3_SECRET_ACCESS_KEY"]
    region = os.environ.get("KORDON_TEST_S3_REGION", "us-east-1")
    p = sh(["curl", "-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
            "--user", f"{key}:{secret}", "--aws-sigv4", f"aws:amz:{region}:s3",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", f"{endpoint}/{name}"])
    if p.stdout.strip() not in ("200", "409"):
        raise SystemExit(f"creating bucket {name}: HTTP {p.stdout}")


class Lines:
    """`mosquitto_sub -v` output, (topic, JSON payload) per line, collected in a thread."""

    def __init__(self, proc):
        self.items, self.lock = [], threading.Lock()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            try:
                value = json.loads(payload)
            except json.JSONDecodeError:
                value = {"text": payload}
            with self.lock:
                self.items.append((topic, value if isinstance(value, dict) else {"value": value}))

    def all(self):
        with self.lock:
            return list(self.items)


DESK_SECRET = "whsec_" + base64.b64encode(b"duty-desk-e2e-signing-key-32byte").decode()


class Desk:
    """The duty desk's webhook receiver: HTTPS on `host` with a certificate of the desk's own
    CA (not a public one), every delivery verified as Standard Webhooks with the sink's secret."""

    def __init__(self, work, host, port):
        from standardwebhooks.webhooks import Webhook
        d = os.path.join(work, "desk")
        os.makedirs(d)
        self.ca = os.path.join(d, "ca.crt")
        sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{d}/ca.key", "-out", self.ca, "-days", "2", "-subj", "/CN=Duty desk CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        open(f"{d}/ext", "w").write(f"subjectAltName=IP:{host}\nextendedKeyUsage=serverAuth\n"
                                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
        sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.csr", "-subj", "/CN=duty desk"])
        sh(["openssl", "x509", "-req", "-in", f"{d}/tls.csr", "-CA", self.ca, "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext", "-out", f"{d}/tls.crt"])
        self.url = f"https://{host}:{port}/kordon"
        self.got, self.bad, self.lock = [], [], threading.Lock()
        wh, outer = Webhook(DESK_SECRET), self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = wh.verify(body, headers)
                except Exception as e:  # noqa: BLE001 - every failed verification is kept
                    with outer.lock:
                        outer.bad.append(str(e))
                    self.send_response(401)
                    self.end_headers()
                    return
                with outer.lock:
                    outer.got.append(payload)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{d}/tls.crt", f"{d}/tls.key")
        self.server = http.server.ThreadingHTTPServer((host, port), H)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def all(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.server.shutdown()


class Install:
    """One installation: its namespace, helm release, Site and Cameras."""

    def __init__(self, site, ns, country, tz, bucket, ingest, detection, cameras):
        self.site, self.ns, self.country, self.tz = site, ns, country, tz
        self.bucket, self.ingest, self.detection, self.cameras = bucket, ingest, detection, cameras

    def helm_install(self, image_tag):
        key, secret = os.environ["KORDON_TEST_S3_ACCESS_KEY_ID"], os.environ["KORDON_TEST_S3_SECRET_ACCESS_KEY"]
        return sh(["helm", "install", "kordon", os.path.join(ROOT, "charts", "kordon"), "--namespace", self.ns,
                   "--create-namespace", "--skip-crds", "--set", "operator.replicas=1", "--set", f"operator.watchNamespace={self.ns}",
                   "--set", f"operator.statusInterval={STATUS_INTERVAL}s", "--set", f"objectStorage.accessKeyId={key}",
                   "--set", f"objectStorage.secretAccessKey={secret}", "--set", f"image.tag={image_tag}"])

    def link_hosts(self):
        """The names partners dial: the partner link of alerting, and of storage."""
        return [f"partner.kordon.{self.site}.example", f"storage.partner.kordon.{self.site}.example"]

    def manifest(self, gateway, s3_port, sinks=(), rules=()):
        docs = [{
            "apiVersion": "kordon.io/v1alpha1", "kind": "Site",
            "metadata": {"name": self.site, "namespace": self.ns},
            "spec": {
                "displayName": f"{self.site.capitalize()} (e2e)", "country": self.country, "timeZone": self.tz,
                "storage": {"bucket": self.bucket, "endpoint": f"http://{gateway}:{s3_port}",
                            "credentialsSecret": "kordon-object-storage", "retentionDays": 1},
                "ingest": {"replicas": self.ingest, "segmentSeconds": SEGMENT},
                "detection": {"replicas": self.detection, "framesPerSecond": 5},
                # People sign in with the site's identity provider; its key is in ConfigMap sso-keys.
                "auth": {"jwt": {"issuer": issuer(self.site), "audience": "kordon",
                                 "keys": [{"algorithm": "EdDSA", "configMapName": "sso-keys"}]}},
                "partnerLink": {"hostnames": self.link_hosts()},
            },
        }]
        if sinks:
            docs[0]["spec"]["alertSinks"] = list(sinks)
        for name, url, detect in self.cameras:
            detection = {"enabled": detect}
            if detect:
                # The lower 55 % of the frame: the road of the real clip.
                detection["zones"] = [{"name": "road", "points": [[0, 0.45], [1, 0.45], [1, 1], [0, 1]]}]
            docs.append({
                "apiVersion": "kordon.io/v1alpha1", "kind": "Camera",
                "metadata": {"name": name, "namespace": self.ns},
                # Detection analyses the camera's lower-resolution stream, as on real cameras.
                "spec": {"site": self.site, "detection": detection,
                         "streams": {"record": url, **({"detect": url.replace("/main", "/sub")} if detect else {})}},
            })
        for rule in rules:
            docs.append({"apiVersion": "kordon.io/v1alpha1", "kind": "AlertRule",
                         "metadata": {"name": rule["name"], "namespace": self.ns},
                         "spec": {k: v for k, v in rule.items() if k != "name"}})
        return "\n".join("---\n" + json.dumps(d) for d in docs)


def issuer(site):
    return f"https://sso.{site}.example"


class Idp:
    """A site's identity provider: its Ed25519 signing key, and tokens for its people."""

    def __init__(self, work, site):
        self.site = site
        self.key, self.public = os.path.join(work, f"sso-{site}.key"), os.path.join(work, f"sso-{site}.pem")
        sh(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.key])
        sh(["openssl", "pkey", "-in", self.key, "-pubout", "-out", self.public])

    def token(self, sub, name, roles):
        return mint_jwt(self.key, issuer(self.site), "kordon", sub, {self.site: roles}, name=name)


class Person:
    """Someone of a site, signed in with a token of the site's identity provider (no client
    certificate), running the image's CLI; `/out` is their writable directory."""

    def __init__(self, bundle, hosts, work, inst, idp, sub, name, roles, ca_file):
        self.bundle, self.hosts, self.inst, self.sub = bundle, hosts, inst, sub
        self.dir, self.out = os.path.join(work, f"person-{sub}"), os.path.join(work, f"person-{sub}-out")
        os.makedirs(self.dir)
        os.makedirs(self.out)
        os.chown(self.out, 65532, 65532)
        shutil.copy(ca_file, os.path.join(self.dir, "ca.crt"))
        os.chmod(os.path.join(self.dir, "ca.crt"), 0o644)
        self.token = idp.token(sub, name, roles)

    def run(self, args, timeout=120):
        return oci.run(self.bundle, ["/usr/bin/kordon", *args, "--output", "json"],
                       [(self.hosts, "/etc/hosts", True), (self.dir, "/certs", True), (self.out, "/out", False)],
                       timeout=timeout, env={"KORDON_TOKEN": self.token})

    def cli(self, service, *args, timeout=120):
        """`kordon ARGS` against the site's `service`: (rc, stdout, stderr)."""
        server = f"https://{self.inst.site}-{service}.{self.inst.ns}.svc:8470"
        return self.run([*args, "--server", server, "--ca-file", "/certs/ca.crt"], timeout=timeout)

    def json(self, service, *args, timeout=120):
        """The CLI's JSON output, or (None, its error)."""
        rc, out, err = self.cli(service, *args, timeout=timeout)
        if rc != 0:
            return None, (err or out).strip()[-600:]
        try:
            return json.loads(out), ""
        except json.JSONDecodeError:
            return None, out[-600:]


def pb_fields(buf):
    """[(field number, value)] of a protobuf message: ints for varints, bytes otherwise."""
    out, i = [], 0

    def varint():
        nonlocal i
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n
    while i < len(buf):
        key = varint()
        wire = key & 7
        if wire == 0:
            v = varint()
        elif wire == 2:
            n = varint()
            v, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wire}")
        out.append((key >> 3, v))
    return out


def field(buf, number):
    """Every value of field `number`."""
    return [v for n, v in pb_fields(buf) if n == number]


class ConsoleWeb:
    """gRPC-Web calls as the web console makes them: HTTPS to storage's HTTP listener (the pod's
    address, its certificate checked against the Service's name and the site CA)."""

    def __init__(self, node, inst, ca_file):
        pods = [ip for ns, name, ip, running, _, _ in node.pod_list()
                if ns == inst.ns and name.startswith(f"{inst.site}-storage-") and running]
        self.ip, self.host = (pods or [None])[0], f"{inst.site}-storage.{inst.ns}.svc"
        self.ctx = ssl.create_default_context(cafile=ca_file)

    def _post(self, path, body, token):
        conn = http.client.HTTPSConnection(self.host, 8472, context=self.ctx, timeout=30)
        conn.sock = self.ctx.wrap_socket(socket.create_connection((self.ip, 8472), timeout=30),
                                         server_hostname=self.host)
        headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        conn.request("POST", "/" + path, struct.pack(">BI", 0, len(body)) + body, headers)
        return conn, conn.getresponse()

    def call(self, path, token, body=b"", until=None):
        """(grpc-status, grpc-message, [messages]); a stream is read until `until` messages."""
        conn, r = self._post(path, body, token)
        msgs, trailers = [], {}
        try:
            while until is None or len(msgs) < until:
                head = r.read(5)
                if len(head) < 5:
                    break
                flag, n = struct.unpack(">BI", head)
                frame = r.read(n)
                if flag & 0x80:
                    for line in frame.decode().split("\r\n"):
                        k, _, v = line.partition(":")
                        if k.strip():
                            trailers[k.strip().lower()] = v.strip()
                else:
                    msgs.append(frame)
        finally:
            conn.close()
        status = trailers.get("grpc-status", r.headers.get("grpc-status"))
        if status is None and until is not None and len(msgs) >= until:
            status = "0"  # (a stream left open on purpose)
        return (int(status) if status is not None else None,
                trailers.get("grpc-message", r.headers.get("grpc-message", "")), msgs)


def partner_manifest(inst, other, key, shares, receives):
    """`inst`'s Partner resource for `other`, with what `other` gave: its site name, link URLs,
    CA (ConfigMap `<other>-ca`) and evidence key."""
    alerting_host, storage_host = other.link_hosts()
    return json.dumps({
        "apiVersion": "kordon.io/v1alpha1", "kind": "Partner",
        "metadata": {"name": other.site, "namespace": inst.ns},
        "spec": {"site": inst.site, "partnerSite": other.site, "displayName": f"{other.site.capitalize()} (e2e)",
                 "endpoint": f"https://{alerting_host}:8473", "storageEndpoint": f"https://{storage_host}:8473",
                 "ca": {"configMapName": f"{other.site}-ca"}, "evidencePublicKey": key,
                 "shares": shares, "receives": receives},
    })


# What burgas shares with edirne: its high alerts of port-gate, and footage of it on request.
SHARES = {"alerts": True, "minSeverity": "high", "cameras": ["port-gate"],
          "footage": {"requests": True, "maxRange": "1h", "form": "original", "keepFor": "30d"}}
NOTHING = {"alerts": False}


def sites_and_cameras(ns):
    return json.loads(kubectl("get", "sites,cameras", "-n", ns, "-o", "json").stdout)["items"]


def all_recording(ns, n):
    items = sites_and_cameras(ns)
    sites = [i for i in items if i["kind"] == "Site"]
    cams = [i for i in items if i["kind"] == "Camera"]
    ok = (len(cams) == n and sites and condition(sites[0], "Ready").get("status") == "True"
          and all(condition(c, "Recording").get("status") == "True" for c in cams))
    return items if ok else None


def replicas_of(ns):
    """Camera -> the ingest replica recording it, from the Cameras' status."""
    out = {}
    for c in sites_and_cameras(ns):
        if c["kind"] == "Camera":
            out[c["metadata"]["name"]] = (c.get("status") or {}).get("replica")
    return out


class Admin:
    """A site admin's client certificate, issued from the site CA (Secret `<site>-ca`), the way
    a cluster admin with access to that Secret would; and the image's CLI run with it."""

    def __init__(self, api, bundle, hosts, work, inst):
        self.bundle, self.hosts, self.inst = bundle, hosts, inst
        self.dir = os.path.join(work, f"admin-{inst.site}")
        os.makedirs(self.dir)
        ca = api.get(f"/api/v1/namespaces/{inst.ns}/secrets/{inst.site}-ca")
        for k in ("ca.crt", "ca.key"):
            open(os.path.join(self.dir, k), "wb").write(base64.b64decode(ca["data"][k]))
        d = self.dir
        uri = f"spiffe://kordon.io/ns/{inst.ns}/site/{inst.site}/operator"
        sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.csr", "-subj", f"/CN=e2e-admin.{inst.site}"])
        ext = f"{d}/ext.cnf"
        open(ext, "w").write(f"subjectAltName=URI:{uri}\nextendedKeyUsage=clientAuth\n"
                             "keyUsage=critical,digitalSignature\n")
        sh(["openssl", "x509", "-req", "-in", f"{d}/tls.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", f"{d}/tls.crt"])
        os.remove(f"{d}/ca.key")
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)

    def cli(self, *args, timeout=60):
        server = f"https://{self.inst.site}-storage.{self.inst.ns}.svc:8470"
        rc, out, err = oci.run(self.bundle, ["/usr/bin/kordon", *args, "--server", server,
                                             "--ca-file", "/certs/ca.crt", "--cert-file", "/certs/tls.crt",
                                             "--key-file", "/certs/tls.key", "--output", "json"],
                               [(self.hosts, "/etc/hosts", True), (self.dir, "/certs", True)], timeout=timeout)
        return rc, out, err

    def footage(self, camera, since):
        rc, out, err = self.cli("footage", "list", "--camera", f"{self.inst.site}/{camera}", "--since", since,
                                "--reason", "e2e cluster check")
        if rc != 0:
            return None, err.strip()[-400:]
        return json.loads(out or "[]"), ""


def ts(v):
    """An RFC 3339 time from the CLI's JSON, as epoch seconds."""
    from datetime import datetime
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


def holes(ranges, start, end):
    """(start, end, reason) of each stretch within [start, end] not covered by a recorded range."""
    rec = sorted((ts(r["from"]), ts(r["to"])) for r in ranges if r.get("kind") == "recorded")
    out, t = [], start
    for a, b in rec:
        if b <= t:
            continue
        if a > t and a < end:
            out.append((t, min(a, end)))
        t = max(t, b)
    if t < end:
        out.append((t, end))
    return out


def footage_after(admin, cameras, after, timeout=180):
    """Each camera's footage once its index holds a recorded range ending after `after` (under
    load, segments reach the index some seconds after they were recorded): camera -> (ranges,
    the end of its last recorded range), or (None, the CLI's error)."""
    out = {}
    deadline = time.time() + timeout
    while True:
        for cam in cameras:
            ranges, err = admin.footage(cam, "15m")
            ends = [ts(r["to"]) for r in ranges or [] if r.get("kind") == "recorded"]
            out[cam] = (ranges, max(ends)) if ranges is not None and ends else (None, err or "nothing recorded")
        if all(r is not None and end >= after for r, end in out.values()) or time.time() > deadline:
            return out
        time.sleep(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", help="the image as an OCI archive (default: build one with scripts/image.sh)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory and leave nothing stopped")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("cluster_check needs root: it makes network namespaces and runs the image with chroot")
    for var in ("KUBECONFIG", "KORDON_TEST_S3_ENDPOINT"):
        if not os.environ.get(var):
            raise SystemExit(f"{var} is not set: eval \"$(scripts/kube.sh env)\" and "
                             "eval \"$(scripts/services.sh env)\" first")
    # SIGTERM (a CI timeout) still stops the pods and removes the network namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="kordon-cluster-")
    print(f"two Kordon installations on kube-apiserver, every pod from the image (work dir {work})")
    archive = args.archive
    if not archive:
        archive = os.path.join(work, "kordon.oci.tar")
        say("building the image (scripts/image.sh build --profile dev)")
        sh(["bash", os.path.join(ROOT, "scripts", "image.sh"), "build", "--profile", "dev", "--out", archive],
           timeout=3600)
    bundle = os.path.join(work, "bundle")
    sh(["bash", os.path.join(ROOT, "scripts", "image.sh"), "unpack", archive, bundle], timeout=1200)
    tag = version()
    image = oci.image_config(archive)
    check(f"the image is kordon/kordon:{tag}, the chart's default tag (its appVersion)",
          image["ref"] == f"kordon/kordon:{tag}", str(image["ref"]))
    run = time.strftime("%m%d%H%M") + secrets.token_hex(2)
    s3_port = int(os.environ["KORDON_TEST_S3_ENDPOINT"].rsplit(":", 1)[1])

    api = kubelet.Api(os.environ["KUBECONFIG"])
    bg = Install("burgas", f"kordon-bg-{run}", "BG", "Europe/Sofia", f"kordon-e2e-{run}-burgas", 2, 1, [])
    tr = Install("edirne", f"kordon-tr-{run}", "TR", "Europe/Istanbul", f"kordon-e2e-{run}-edirne", 1, 0, [])
    net = kubelet.Network()
    # Each site's partner-link names, as a load balancer's DNS would route them.
    aliases = {}
    for inst in (bg, tr):
        alerting_host, storage_host = inst.link_hosts()
        aliases[alerting_host] = (inst.ns, f"{inst.site}-alerting")
        aliases[storage_host] = (inst.ns, f"{inst.site}-storage")
    node = kubelet.Kubelet(api, bundle, image, work, {bg.ns, tr.ns}, network=net,
                           forwards=[((net.gateway, s3_port), ("127.0.0.1", s3_port))], log=say, aliases=aliases)
    idps = {inst.site: Idp(work, inst.site) for inst in (bg, tr)}
    cams, desk = [], None
    try:
        # The cameras: outside the cluster, on the bridge's host address.
        pattern_port, clip_port = 8554, 8555
        ctl = free_ports(2)
        cache_root = os.path.join(os.environ.get("KORDON_CACHE", os.path.expanduser("~/.cache/kordon")), "camsim-image")
        logs = []
        for port, control, kind, extra in ((pattern_port, ctl[0], "pattern", ["--source", "pattern", "--cameras", "7"]),
                                           (clip_port, ctl[1], "clip", ["--cameras", "1"])):
            # Encoded once and kept, as camsim's own cache is (the first run encodes for a while).
            cache = os.path.join(cache_root, kind)
            os.makedirs(cache, exist_ok=True)
            os.chown(cache, 65532, 65532)
            logs.append(os.path.join(work, f"camsim-{kind}.log"))
            cams.append(oci.start(bundle, ["/usr/bin/kordon", "camsim", "--listen", f"{net.gateway}:{port}",
                                           "--control-listen", f"127.0.0.1:{control}", "--cache-dir", "/cache", *extra],
                                  [(cache, "/cache", False)], stdout=open(logs[-1], "w"), stderr=subprocess.STDOUT))
        if not eventually("the cameras", lambda: all("camsim ready" in open(f).read() for f in logs), timeout=600):
            raise Abort("camsim never became ready: " + " ".join(logs))
        # The test patterns record their 640x360 streams: eight 1080p streams through the test
        # object store would load a 2-core machine more than the check needs.
        pat = lambda i: f"rtsp://{net.gateway}:{pattern_port}/cam{i}/sub"
        bg.cameras = [("port-gate", f"rtsp://{net.gateway}:{clip_port}/cam1/main", True),
                      ("pier-2", pat(1), False), ("lighthouse", pat(2), False), ("station", pat(3), False)]
        tr.cameras = [(f"kapikule-{i}", pat(3 + i), False) for i in range(1, 5)]
        for inst in (bg, tr):
            make_bucket(inst.bucket)
        # Where burgas's alerts go: Mosquitto on the bridge's host address, and a subscriber.
        mqtt_port = free_ports(1)[0]
        conf = os.path.join(work, "mosquitto.conf")
        open(conf, "w").write(f"listener {mqtt_port} {net.gateway}\nallow_anonymous true\n")
        broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=open(os.path.join(work, "mosquitto.log"), "w"),
                                  stderr=subprocess.STDOUT)
        cams.append(broker)
        time.sleep(1)
        sub = subprocess.Popen(["mosquitto_sub", "-h", net.gateway, "-p", str(mqtt_port), "-q", "1", "-v",
                                "-t", "kordon/#"], stdout=subprocess.PIPE, text=True)
        cams.append(sub)
        mqtt = Lines(sub)
        desk = Desk(work, net.gateway, free_ports(1)[0])
        node.start()

        # 1. Install, apply, Ready and Recording.
        say("step 1: helm install in two namespaces, then kubectl apply of the Sites and eight Cameras")
        # The CRDs first, as a platform engineer applies (and upgrades) them: helm installs a
        # chart's crds/ only when they are missing and never upgrades them, and the operator's
        # tests apply them on this same API server under another field manager.
        p = kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=platform-engineer",
                    "-f", os.path.join(ROOT, "charts", "kordon", "crds", "kordon.io.yaml"), check_rc=False)
        check("1. kubectl apply --server-side of the chart's CRDs", p.returncode == 0, p.stderr[-400:])
        for inst in (bg, tr):
            inst.helm_install(tag)
            # The identity provider's public key, which the Site's spec.auth names.
            kubectl("create", "configmap", "sso-keys", "-n", inst.ns, f"--from-file=public.pem={idps[inst.site].public}")
        ops = eventually("both operators ready", lambda: all(
            any(p[0] == inst.ns and p[1].startswith("kordon-") and p[4] for p in node.pod_list()) for inst in (bg, tr)),
            timeout=180)
        check("1. helm install: each namespace's operator runs from the image and is ready (in-cluster token, "
              "the chart's Role)", bool(ops), str(node.pod_list()))
        t_apply = time.time()
        # The duty desk's webhook: its signing secret in a Secret, its private CA in a ConfigMap.
        kubectl("create", "secret", "generic", "duty-desk-hmac", "-n", bg.ns, f"--from-literal=key={DESK_SECRET}")
        kubectl("create", "configmap", "duty-desk-ca", "-n", bg.ns, f"--from-file=ca.crt={desk.ca}")
        sinks = [{"name": "broker", "mqtt": {"url": f"mqtt://{net.gateway}:{mqtt_port}", "topic": "kordon"}},
                 {"name": "duty-desk", "webhook": {"url": desk.url, "signingSecret": "duty-desk-hmac",
                                                   "ca": {"configMapName": "duty-desk-ca"}}}]
        rules = [{"name": "person-on-the-road", "site": bg.site, "severity": "high", "classes": ["person"],
                  "zone": {"zones": ["road"], "minDwell": "1s"}}]
        for inst in (bg, tr):
            p = kubectl("apply", "-f", "-", check_rc=False,
                        input=inst.manifest(net.gateway, s3_port, *((sinks, rules) if inst is bg else ())))
            check(f"1. kubectl apply: {inst.site}'s Site and 4 Cameras accepted"
                  + (" (with an MQTT alert sink and an AlertRule)" if inst is bg else ""), p.returncode == 0, p.stderr[-500:])
        ready = {}
        for inst in (bg, tr):
            ready[inst.site] = eventually(f"{inst.site} Ready and recording", lambda: all_recording(inst.ns, 4),
                                          timeout=420, every=3)
        took = time.time() - t_apply
        for inst in (bg, tr):
            table = kubectl("get", "sites,cameras", "-n", inst.ns, check_rc=False).stdout
            print("\n".join("    " + l for l in table.splitlines()))
            check(f"1. kubectl get sites,cameras: {inst.site} Ready, its 4 cameras Recording "
                  f"({took:.0f} s after apply)", bool(ready[inst.site]),
                  "\n" + table + "\n" + "\n".join(str(p) for p in node.pod_list()))
        if not all(ready.values()):
            raise Abort("the installations never became Ready")
        admins = {inst.site: Admin(api, bundle, node.hosts_path, work, inst) for inst in (bg, tr)}
        time.sleep(2 * SEGMENT)
        for inst in (bg, tr):
            listed = {}
            for name, _, _ in inst.cameras:
                ranges, err = admins[inst.site].footage(name, "10m")
                listed[name] = [r for r in ranges or [] if r.get("kind") == "recorded"] or err
            check(f"1. {inst.site}: every camera's footage is listed by the image's CLI (site admin certificate)",
                  all(isinstance(v, list) for v in listed.values()), str(listed)[:800])

        # 1. (continued) The partner agreement, as the two platform teams would make it.
        say("step 1: the partner agreement: evidence keys and CAs exchanged, kubectl apply of the Partners")
        site_ca = {inst.site: os.path.join(admins[inst.site].dir, "ca.crt") for inst in (bg, tr)}
        people = {
            "bg-officer": Person(bundle, node.hosts_path, work, bg, idps["burgas"], "petrova", "Insp. Maria Petrova",
                                 ["operator"], site_ca["burgas"]),
            "bg-auditor": Person(bundle, node.hosts_path, work, bg, idps["burgas"], "ivanov", "Georgi Ivanov",
                                 ["auditor"], site_ca["burgas"]),
            "tr-officer": Person(bundle, node.hosts_path, work, tr, idps["edirne"], "yilmaz", "Komiser Ayşe Yılmaz",
                                 ["operator"], site_ca["edirne"]),
            "tr-auditor": Person(bundle, node.hosts_path, work, tr, idps["edirne"], "kaya", "Murat Kaya",
                                 ["auditor"], site_ca["edirne"]),
        }
        keys = {}
        for inst, who in ((bg, "bg-auditor"), (tr, "tr-auditor")):
            v, err = people[who].json("storage", "audit", "verify", "--site", inst.site)
            keys[inst.site] = ((v or {}).get("head") or {}).get("public_key") or ""
            check(f"1. {inst.site}'s auditor signs in with the site's identity provider (a token, no certificate): "
                  "kordon audit verify passes and prints the site's evidence key", bool(v) and v["intact"]
                  and len(keys[inst.site]) == 64, err or json.dumps(v)[:400])
        for inst, other in ((bg, tr), (tr, bg)):
            # Only the CA certificate crosses, never its key.
            kubectl("create", "configmap", f"{other.site}-ca", "-n", inst.ns, f"--from-file=ca.crt={site_ca[other.site]}")
        t_partners = time.time()
        for inst, other, shares, receives in ((bg, tr, SHARES, NOTHING), (tr, bg, NOTHING, SHARES)):
            p = kubectl("apply", "-f", "-", check_rc=False,
                        input=partner_manifest(inst, other, keys[other.site], shares, receives))
            check(f"1. kubectl apply: {inst.site}'s Partner {other.site} accepted", p.returncode == 0, p.stderr[-400:])

        def agreed(ns):
            items = json.loads(kubectl("get", "partners", "-n", ns, "-o", "json").stdout)["items"]
            return bool(items) and all(condition(i, "Agreed").get("status") == "True" for i in items)
        both = eventually("both Partners Agreed", lambda: agreed(bg.ns) and agreed(tr.ns), timeout=240, every=3)
        for inst in (bg, tr):
            table = kubectl("get", "partners", "-n", inst.ns, check_rc=False).stdout
            print("\n".join("    " + l for l in table.splitlines()))
        check(f"1. kubectl get partners: both sides show the agreement Agreed ({time.time() - t_partners:.0f} s after "
              "apply; alerting and storage rolled with the partners section)", bool(both),
              kubectl("get", "partners", "-A", "-o", "yaml", check_rc=False).stdout[-1500:])

        # 2. An alert from the real clip, at the site's webhook and MQTT subscriber.
        say("step 2: a person in the real clip enters the zone `road` of burgas/port-gate")
        opened = eventually("a person-on-the-road alert on MQTT", lambda: next(
            (p for t, p in mqtt.all() if t == "kordon/burgas/alerts" and p.get("kind") == "ALERT_EVENT_KIND_OPENED"
             and "person-on-the-road" in json.dumps(p)), None), timeout=240, every=2)
        check("2. a person in the zone raises a person-on-the-road alert: the site's MQTT subscriber gets it "
              "on kordon/burgas/alerts", opened is not None, str(sorted({t for t, _ in mqtt.all()})))
        if opened:
            aid = opened["alert"]["id"]
            per_camera = eventually("the alert on the camera's topic", lambda: any(
                t == "kordon/burgas/port-gate/events" and p.get("alert", {}).get("id") == aid for t, p in mqtt.all()),
                timeout=60)
            check("2. and on kordon/burgas/port-gate/events", bool(per_camera))
            hooked = eventually("the alert at the duty desk's webhook", lambda: next(
                (p for p in desk.all() if (p.get("alert") or {}).get("id") == aid), None), timeout=60)
            check("2. and at the duty desk's webhook: HTTPS with the desk's private CA (the sink's `ca`), "
                  "signed with the sink's secret (Standard Webhooks)", hooked is not None and not desk.bad,
                  f"{len(desk.all())} deliveries, failed verification: {desk.bad[:3]}")

        # 2. (continued) As the agreement allows, the partner gets the alert and acknowledges it.
        shared = None
        if opened:
            def at_edirne():
                a, _ = people["tr-officer"].json("alerting", "alerts", "get", aid)
                return a if a and (a.get("origin") or {}).get("site") == "burgas" else None
            shared = eventually("the alert at edirne", at_edirne, timeout=180, every=3)
            check("2. as the agreement allows, the alert reaches the partner edirne (an edirne officer's token), "
                  "its origin burgas", shared is not None, people["tr-officer"].json("alerting", "alerts", "get", aid)[1])
        if shared:
            rc, _, err = people["tr-officer"].cli("alerting", "alerts", "ack", aid, "--note", "Edirne patrol informed")
            check("2. the edirne officer acknowledges it", rc == 0, err[-300:])

            def acked_at_burgas():
                a, _ = people["bg-officer"].json("alerting", "alerts", "get", aid)
                return a if a and (a.get("acknowledged_by") or "").startswith("edirne/") else None
            seen = eventually("the acknowledgement at burgas", acked_at_burgas, timeout=120, every=2)
            say(f"    at burgas: {aid} {(seen or {}).get('state')} by {(seen or {}).get('acknowledged_by')}")
            check("2. the origin burgas sees the alert acknowledged by edirne/yilmaz",
                  bool(seen) and seen["acknowledged_by"] == "edirne/yilmaz", json.dumps(seen)[:300])

        # 3. Scale.
        say("step 3: kubectl scale site/burgas --replicas=3")
        before = replicas_of(bg.ns)
        t_scale = time.time()
        p = kubectl("scale", f"site/{bg.site}", "-n", bg.ns, "--replicas=3", check_rc=False)
        check("3. kubectl scale site/burgas --replicas=3 accepted", p.returncode == 0, p.stderr[-400:])
        moved = eventually("a camera on burgas-ingest-2, all recording", lambda: (
            "burgas-ingest-2" in replicas_of(bg.ns).values() and all_recording(bg.ns, 4)), timeout=240, every=3)
        after = replicas_of(bg.ns)
        say(f"    placement before {before}, after {after}")
        check("3. the third ingest pod runs and cameras moved to it, all still recording", bool(moved), str(after))
        stored = footage_after(admins[bg.site], [c for c, _, _ in bg.cameras], time.time() + 2 * SEGMENT)
        worst = {}
        for name, (ranges, end) in stored.items():
            hs = holes(ranges or [], t_scale - SEGMENT, end)
            worst[name] = max((b - a for a, b in hs), default=0.0) if ranges is not None else end
        say("    longest gap per camera around the scale: " + ", ".join(
            f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}" for k, v in worst.items()))
        check(f"3. no camera has a gap longer than one segment ({SEGMENT} s) across the scale",
              all(isinstance(v, float) and v <= SEGMENT + 0.5 for v in worst.values()), str(worst))

        # The web console in a cluster: served by storage, it reaches ingest (now three replicas),
        # detection and alerting through storage's gateway, with the officer's own token.
        say("console: the officer's calls through storage's HTTPS listener (gRPC-Web, as the console makes them)")
        web = ConsoleWeb(node, bg, site_ca["burgas"])
        officer = people["bg-officer"].token
        names = lambda msgs, f: sorted(field(field(c, 1)[0], 2)[0].decode() for m in msgs for c in field(m, f))
        st, msg, out = web.call("kordon.ingest.v1.IngestService/ListCameraStatus", officer)
        listed = names(out, 1) if st == 0 and out else []
        check(f"console: ListCameraStatus through storage lists burgas's cameras from its {len(set(after.values()))} "
              f"ingest replicas", listed == sorted(c for c, _, _ in bg.cameras), f"{st} {msg} {listed}")
        st, msg, out = web.call("kordon.ingest.v1.IngestService/WatchCameraStatus", officer, until=len(bg.cameras))
        watched = sorted(field(field(field(m, 1)[0], 1)[0], 2)[0].decode() for m in out if field(m, 2) == [1])
        check("console: WatchCameraStatus through storage streams every camera's current state (merged watches)",
              watched == sorted(c for c, _, _ in bg.cameras), f"{st} {msg} {watched}")
        st, msg, out = web.call("kordon.detection.v1.DetectionService/GetDetectorStatus", officer)
        detecting = names(out, 3) if st == 0 and out else []
        check("console: GetDetectorStatus through storage reports the detector on port-gate",
              "port-gate" in detecting, f"{st} {msg} {detecting}")
        st, msg, out = web.call("kordon.alerting.v1.AlertingService/ListAlerts", officer)
        alerts = field(out[0], 1) if st == 0 and out else []
        check(f"console: ListAlerts through storage (passed on to alerting) shows the alert ({len(alerts)})",
              len(alerts) >= 1 and (not opened or opened["alert"]["id"].encode() in b"".join(alerts)), f"{st} {msg}")
        st, msg, _ = web.call("kordon.ingest.v1.IngestService/ListCameraStatus", None)
        check("console: without a token the gateway refuses (UNAUTHENTICATED): it lends no identity of its own",
              st == 16, f"{st} {msg}")
        listed_cli, err = people["bg-officer"].json("storage", "alerts", "list")
        check("console: the CLI's gRPC through storage reaches alerting too (kordon alerts list --server storage)",
              bool(listed_cli) and (not opened or opened["alert"]["id"] in json.dumps(listed_cli)), err)

        # 4. The partner requests footage of the alert's minute; the owner approves; the partner
        # downloads the bundle and verifies it offline with the owner's pinned key.
        case = "TR-EDR-2026-0042"
        grant = None
        if shared:
            say("step 4: edirne requests port-gate footage of the alert's minute; burgas approves")
            t_alert = ts(shared["opened_at"])
            start, end = t_alert - 30, min(t_alert + 30, time.time() - 2 * SEGMENT)
            iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
            grant, err = people["tr-officer"].json(
                "storage", "footage", "request", "--partner", "burgas", "--camera", "port-gate",
                "--from", iso(start), "--to", iso(end), "--case", case,
                "--legal-basis", "Prüm Decision 2008/615/JHA Art. 12", "--reason", f"alert {aid} at the port gate")
            check("4. the edirne officer requests port-gate footage of the alert's minute (case, legal basis, reason)",
                  bool(grant) and grant.get("state") == "pending", err or json.dumps(grant)[:300])
        if grant:
            gid = grant["id"]
            rc, _, err = people["bg-officer"].cli("storage", "footage", "approve", gid,
                                                  "--reason", "joint response to the port-gate alert")
            check("4. a burgas officer approves it", rc == 0, err[-300:])
            rc, _, err = people["tr-officer"].cli("storage", "footage", "fetch", gid, "--partner", "burgas",
                                                  "--reason", f"case file {case}", "--out", "/out/grant.tar", timeout=300)
            bundle_file = os.path.join(people["tr-officer"].out, "grant.tar")
            size = os.path.getsize(bundle_file) if os.path.exists(bundle_file) else 0
            check(f"4. edirne downloads the bundle ({size} bytes; checked on arrival against burgas's pinned key)",
                  rc == 0 and size > 0, err[-400:])
            if size:
                rc, out, err = people["tr-officer"].run(["evidence", "verify", "/out/grant.tar",
                                                         "--public-key", keys["burgas"]])
                check("4. kordon evidence verify, offline with burgas's key: intact", rc == 0, (out + err)[-400:])
                rc, out, err = people["tr-officer"].run(["evidence", "verify", "/out/grant.tar",
                                                         "--public-key", keys["edirne"]])
                check("4. ... and not with another key (edirne's own)", rc != 0, (out + err)[-300:])

        # 5. Each site's auditor lists the access log and verifies its chain.
        say("step 5: each site's auditor lists the access log and runs kordon audit verify")
        logs = {}
        for inst, who in ((bg, "bg-auditor"), (tr, "tr-auditor")):
            rows, err = people[who].json("storage", "audit", "list", "--site", inst.site, "--reason",
                                         "quarterly audit of cross-border sharing", "--case", "AUD-2026-Q4")
            logs[inst.site] = rows or []
            check(f"5. {inst.site}'s auditor lists the access log ({len(rows or [])} entries)", rows is not None, err)
            seen = {}
            for r in rows or []:
                seen.setdefault(r["action"], r)
            for action, r in sorted(seen.items()):
                say(f"    {inst.site} {action:17} {r['principal']:24} reason={r['reason']!r} case={r['case_id']!r} "
                    f"recipient={r['recipient']!r} source={r['source']!r}")

        def entries(site, action, **want):
            return [r for r in logs.get(site, []) if r["action"] == action
                    and all(r.get(k) == v for k, v in want.items())]
        check("5. burgas: every footage read is there with identity and reason (the site admin's listings)",
              any(r["principal"] and r["reason"] == "e2e cluster check" for r in entries("burgas", "list")),
              str(sorted({r["action"] for r in logs.get("burgas", [])})))
        if shared:
            check("5. burgas: the alert's forward to edirne", any(
                any(aid in o for o in r["objects"]) for r in entries("burgas", "alert-forward", recipient="edirne")))
            check("5. edirne: the alert's receipt from burgas", any(
                any(aid in o for o in r["objects"]) for r in entries("edirne", "alert-receive", source="burgas")))
        if grant:
            for site, side in (("burgas", {"recipient": "edirne"}), ("edirne", {"source": "burgas"})):
                req = entries(site, "footage-request", case_id=case, **side)
                dec = entries(site, "footage-decision", **side)
                dl = entries(site, "download", **side)
                check(f"5. {site}: the request (case {case}, with its reason), the decision and the download "
                      f"({', '.join(f'{k}={v}' for k, v in side.items())})",
                      bool(req) and all(r["reason"] for r in req) and bool(dec) and bool(dl),
                      f"request {req[:1]} decision {dec[:1]} download {dl[:1]}")
            check("5. edirne: its officer yilmaz requested and downloaded",
                  any(r["principal"].endswith("yilmaz") for r in entries("edirne", "download"))
                  and any(r["principal"].endswith("yilmaz") for r in entries("edirne", "footage-request")),
                  str([(r["action"], r["principal"]) for r in logs.get("edirne", []) if r["action"] != "list"])[:600])
        for inst, who in ((bg, "bg-auditor"), (tr, "tr-auditor")):
            v, err = people[who].json("storage", "audit", "verify", "--site", inst.site)
            check(f"5. {inst.site}: kordon audit verify passes ({(v or {}).get('entries_checked')} entries)",
                  bool(v) and v["intact"], err or json.dumps((v or {}).get("findings"))[:400])

        # 6. An ingest process killed.
        placed = replicas_of(bg.ns)
        victim = placed["pier-2"]
        on_victim = sorted(c for c, r in placed.items() if r == victim)
        say(f"step 6: SIGKILL of {victim}'s process (cameras {', '.join(on_victim)})")
        pod = node.get(bg.ns, victim)
        restarts = pod.restarts
        t_kill = time.time()
        node.kill(bg.ns, victim)
        back = eventually(f"{victim} restarted", lambda: pod.restarts > restarts and pod.running, timeout=60, every=0.5)
        t_back = time.time()
        check(f"6. the kubelet restarts {victim} after the SIGKILL ({t_back - t_kill:.1f} s)", bool(back))
        rec = eventually("cameras recording again", lambda: all_recording(bg.ns, 4), timeout=180, every=2)
        check("6. its cameras are Recording again", bool(rec))
        stored = footage_after(admins[bg.site], on_victim, time.time() + 2 * SEGMENT)
        gaps = {}
        for name, (ranges, end) in stored.items():
            hs = holes(ranges or [], t_kill - 2 * SEGMENT, end)
            gaps[name] = (hs, [r.get("gap_reason") for r in ranges or [] if r.get("kind") == "gap"
                               and ts(r["to"]) >= t_kill - SEGMENT]) if ranges is not None else end
        # The bound: at most one segment's gap. What a kill costs is the torn fragment (at
        # most 1 s: the rest of the open segment is recovered), the restart, and the RTSP session
        # up to its first keyframe (camsim's GOP is 2 s); the placement is resumed from
        # placement.json, not waited for.
        log = open(node.log_path(bg.ns, victim), errors="replace").read()
        say(f"    {victim}'s log: {log.count('recovered the segment a crash interrupted')} segment(s) recovered, "
            f"{log.count('resumed the cameras this replica was last given')} placement resumed")
        for name, v in gaps.items():
            if isinstance(v, str):
                check(f"6. {name}: footage listed after the kill", False, v)
                continue
            hs, reasons = v
            longest = max((b - a for a, b in hs), default=0.0)
            say(f"    {name}: {len(hs)} gap(s) {[(round(a - t_kill, 1), round(b - a, 1)) for a, b in hs]} "
                f"(start after the kill, length), reasons {reasons}")
            check(f"6. {name}: exactly one gap, `ingest restart`, from the kill on and no longer than one "
                  f"segment ({SEGMENT} s)",
                  len(hs) == 1 and hs[0][0] >= t_kill - 2.0 and longest <= SEGMENT and "ingest restart" in reasons,
                  f"{hs} (kill at {t_kill:.1f}) {reasons}")
        # Every pod of both installations ran the whole time: no crash loop anywhere.
        pods = node.pod_list()
        unsteady = [(ns, name, restarts, ready) for ns, name, _, running, ready, restarts in pods
                    if not running or not ready or restarts != (1 if name == victim else 0)]
        say(f"    {len(pods)} pods: " + ", ".join(f"{name} ({restarts} restarts)" for _, name, _, _, _, restarts in pods))
        check(f"every pod ({len(pods)}) runs and is ready, none restarted but the one killed",
              not unsteady, str(unsteady))
    except Abort as e:
        say(f"stopped early: {e}")
    except Exception:
        check("the scenario runs to its end", False, traceback.format_exc())
    finally:
        say("stopping: pods (SIGTERM), cameras")
        if not args.keep:
            # The resources first, while the operators still run to release their finalizers.
            for inst in (bg, tr):
                for kind in ("partners", "cameras", "alertrules", "sites"):
                    subprocess.run(["kubectl", "delete", kind, "--all", "-n", inst.ns, "--wait=false"], capture_output=True)
            time.sleep(3)
            for inst in (bg, tr):
                subprocess.run(["helm", "uninstall", "kordon", "-n", inst.ns], capture_output=True)
        node.stop()
        stop(cams, timeout=30)
        if desk:
            desk.close()
        print(summary())
        if not args.keep and not failed():
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")
    raise SystemExit(1 if failed() else 0)


if __name__ == "__main__":
    main()
