#!/usr/bin/env python3
"""The fault campaign: each fault against the real parts, then a table of what was lost.

    python3 e2e/faults.py --kordon target/debug/kordon [--quick] [--only flap,rgw,...]

Runs `kordon camsim`, `kordon storage` and `kordon ingest` as separate processes, recording into
Ceph RGW, and for every fault:

  flap     a camera stopped, started and stalled at random N times (camsim's control API): every
           interruption is a registered gap with a reason, never a silent hole;
  rgw      object storage (the whole Ceph: mon, osd, RGW) down D minutes while ingest records: the
           spool fills, drains in order after, nothing lost and no gap;
  postgres the index database down, storage on PostgreSQL: registrations retry, nothing lost;
  kill     ingest SIGKILLed mid-segment and restarted: the open segment becomes an
           `ingest restart` gap, never a corrupt object, never a silent hole;
  diskfull the spool's filesystem (a small tmpfs) kept full by another writer: new footage is
           refused with a condition and a metric and a spool-overflow gap, what is stored is kept,
           the spool's byte account comes back, recording resumes when space returns
           (--spool-max-mib shows what a leaked account does against a smaller ceiling);
  export   storage SIGKILLed during an evidence export and restarted: the export fails clearly,
           a retry with the same request id succeeds, the bundle verifies with `kordon evidence
           verify`, and the interrupted bundle is not left "being built";
  export_rgw  the same with Ceph (RGW) stopped during the export and started again;
  retention   storage's clock put 31 days ahead (libfaketime) so that every segment expires, and
           storage SIGKILLed at random moments of its retention sweeps, then left to finish: every
           segment deleted once (object gone, record kept as a tombstone), each named in a DELETE
           access-log entry written first, the chain and the access log verify intact;
  clock    the wall clock of ingest and storage stepped 1 h ahead and back (libfaketime), with a
           camera reconnect after each step and an ingest restart: segments whole, no overlap,
           the chain's order follows time, every hole a gap with a reason.

After each fault, every segment of every camera is checked with tools that are not Kordon's:
the object read from RGW with curl hashes to the SHA-256 in the index and has its size, ffprobe
reads it with frames = duration x 25 (decoding every segment in --quick, and in the full run one
in ten plus every segment a fault cut short: --decode-every); no frame is held still for a second
or more inside a segment (time registered as recorded that has no frames, and no gap);
consecutive segments touch or the hole is covered by registered gaps; storage reports no
unexplained time; the chain's sequence follows time. The table gives, per fault: what was
expected, segments expected ((span - gap time) / segment length) / stored / lost (segments that
fail a check, and seconds of timeline with neither frames nor a gap), time to recover, verdict.

The faults stop and start Ceph and PostgreSQL, so the campaign runs its own: scripts/services.sh
with KORDON_CACHE=<cache>/faults and other ports (RGW 17480, mon 16789, PostgreSQL 15433), never
the services other tests share; they are stopped at the end (--keep-services leaves them up).
The spool's tmpfs needs root (without it, diskfull is skipped and says so).

--quick: short outages and a few flaps (about 6 minutes in all); by default the full campaign
(100 flaps, RGW down 10 minutes, PostgreSQL down 2 minutes).
"""

import argparse
import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from common import Client, check, failed, free_ports, passed, summary, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES = os.path.join(HERE, "..", "scripts", "services.sh")
FPS = 25
STORAGE = "kordon.storage.v1.StorageService"
INGEST = "kordon.ingest.v1.IngestService"
AUDIT = {"reason": "fault campaign verification", "case_id": "FAULTS"}
# A frame held this long inside a segment (no frames, no gap) counts as a silent hole.
HOLD_LIMIT = 1.0
FAULTS = ["flap", "rgw", "postgres", "kill", "diskfull", "export", "export_rgw", "retention", "clock"]
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def now_us():
    return int(time.time() * 1_000_000)


def ts(s):
    """RFC 3339 from protobuf JSON -> microseconds."""
    from datetime import datetime

    base, frac = s.rstrip("Z"), "0"
    if "." in base:
        base, frac = base.split(".")
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    return int((dt - datetime(1970, 1, 1)).total_seconds()) * 1_000_000 + int((frac + "000000")[:6])


def rfc3339(us):
    t = time.gmtime(us // 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{us % 1_000_000:06d}Z"


def say(msg):
    print(msg, flush=True)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def merge(spans):
    out = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1000:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def covered(span, merged, slack=1000):
    a, b = span
    return any(ga <= a + slack and gb >= b - slack for ga, gb in merged)


# ---- the campaign's own Ceph and PostgreSQL ------------------------------------------------------
class Services:
    def __init__(self, args):
        cache = args.services_cache or os.path.join(
            os.environ.get("KORDON_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kordon")), "faults")
        self.env = dict(os.environ, KORDON_CACHE=cache, KORDON_RGW_PORT=str(args.rgw_port),
                        KORDON_CEPH_MON_PORT=str(args.mon_port), KORDON_PG_PORT=str(args.pg_port))
        self.pg_port = args.pg_port
        self.vars = {}

    def sh(self, what, timeout=600):
        p = subprocess.run(["bash", SERVICES, what], env=self.env, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"scripts/services.sh {what} failed:\n{p.stderr[-2000:]}")
        return p.stdout

    def start(self):
        self.sh("start")
        for line in self.sh("env").splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            self.vars[k] = v

    def psql(self, sql):
        subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(self.pg_port), "-U", "postgres", "-d", "postgres", "-c", sql],
                       check=True, capture_output=True, text=True, timeout=60)

    def s3_get(self, key, out):
        v = self.vars
        url = f"{v['KORDON_TEST_S3_ENDPOINT']}/{v['KORDON_TEST_S3_BUCKET']}/{key}"
        return subprocess.run(
            ["curl", "-sf", "-m", "60", "--aws-sigv4", f"aws:amz:{v['KORDON_TEST_S3_REGION']}:s3",
             "--user", f"{v['KORDON_TEST_S3_ACCESS_KEY_ID']}:{v['KORDON_TEST_S3_SECRET_ACCESS_KEY']}",
             "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-o", out, url]).returncode == 0


# ---- one fault's processes ---------------------------------------------------------------------
class Rig:
    """`kordon storage` + `kordon ingest` recording cameras of a site of their own, in a data
    directory of their own, into the campaign's RGW."""

    def __init__(self, camp, key, cameras=None, database_url=None, spool_dir=None, spool_max=0, storage_extra="",
                 local_objects=False, segment=0):
        # Two cameras in the full run; one in --quick (verification decodes every segment).
        cameras = cameras or ((1,) if camp.args.quick else (1, 2))
        self.camp, self.key = camp, key
        self.site = f"{key}-{camp.run_id}"
        self.work = os.path.join(camp.work, key)
        os.makedirs(self.work)
        self.data = os.path.join(self.work, "data")
        self.spool = spool_dir or os.path.join(self.data, "spool")
        self.cams = [f"cam-{i}" for i in cameras]
        self.seg = segment or camp.seg
        self.sg, self.sa, self.sh, self.ig, self.ia, self.ih = free_ports(6)
        v = camp.services.vars
        self.cfg = os.path.join(self.work, "kordon.yaml")
        # Local files instead of RGW where the fault needs it (a clock far off fails S3 signing).
        self.objects_root = os.path.join(self.work, "objects") if local_objects else None
        with open(self.cfg, "w") as f:
            if self.objects_root:
                f.write(f"storage:\n  objects: {{kind: local, root: {self.objects_root}}}\n")
            else:
                f.write(f"""storage:
  objects:
    kind: s3
    bucket: {v['KORDON_TEST_S3_BUCKET']}
    endpoint: {v['KORDON_TEST_S3_ENDPOINT']}
    region: {v['KORDON_TEST_S3_REGION']}
    access_key_id: {v['KORDON_TEST_S3_ACCESS_KEY_ID']}
    secret_access_key: {v['KORDON_TEST_S3_SECRET_ACCESS_KEY']}
    allow_http: true
""")
            if database_url:
                f.write(f"  database_url: {database_url}\n")
            f.write(storage_extra)
            f.write(f"ingest:\n  segment_duration: {self.seg}s\n  storage:\n    url: http://127.0.0.1:{self.sg}\n")
            if spool_dir:
                f.write(f"  spool_dir: {spool_dir}\n")
            if spool_max:
                f.write(f"  spool_max_bytes: {spool_max}\n")
            f.write(f"sites:\n  - name: {self.site}\n    cameras:\n")
            for i, n in zip(cameras, self.cams):
                f.write(f"      - name: {n}\n        record: rtsp://127.0.0.1:{camp.rtsp}/cam{i}/main\n")
        self.env = dict(os.environ, KORDON_LOG="warn,kordon_ingest=info,kordon_storage=info",
                        KORDON_DEV_IDENTITY="1", AWS_ALLOW_HTTP="true")
        self.storage = self.ingest = None
        self.t0 = now_us()
        # Stopped at the end of the campaign even when a fault ends in an exception.
        camp.rigs.append(self)

    def _start(self, what, grpc, admin, http, env=None):
        log = open(os.path.join(self.work, f"{what}.log"), "a")
        return subprocess.Popen(
            [self.camp.kordon, what, "--config", self.cfg, "--data-dir", self.data,
             "--grpc-listen", f"127.0.0.1:{grpc}", "--admin-listen", f"127.0.0.1:{admin}",
             "--http-listen", f"127.0.0.1:{http}"], env=env or self.env, stdout=log, stderr=log)

    def start_storage(self, env=None):
        self.storage = self._start("storage", self.sg, self.sa, self.sh, env)
        wait_port(self.sg, 120)

    def start_ingest(self):
        self.ingest = self._start("ingest", self.ig, self.ia, self.ih)
        wait_port(self.ig, 120)

    def start(self):
        self.t0 = now_us()
        self.start_storage()
        self.start_ingest()

    def stop_proc(self, p, sig=signal.SIGTERM, timeout=60):
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode if p else None

    def stop(self):
        rc_i = self.stop_proc(self.ingest)
        rc_s = self.stop_proc(self.storage)
        return rc_i, rc_s

    def client(self):
        return Client(f"127.0.0.1:{self.sg}")

    def get_object(self, key, out):
        """Reads an object into `out` from the store (RGW with curl, or the local files);
        False when it is not there."""
        if not self.objects_root:
            return self.camp.services.s3_get(key, out)
        path = os.path.join(self.objects_root, key)
        if not os.path.isfile(path):
            return False
        shutil.copyfile(path, out)
        return True

    def metrics(self):
        """Ingest's /metrics, each series summed over its labels."""
        out = {}
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.ia}/metrics", timeout=5).read().decode()
        except OSError:
            return out
        for line in body.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, val = line.rpartition(" ")
            name = name.split("{")[0]
            try:
                out[name] = out.get(name, 0) + float(val)
            except ValueError:
                pass
        return out

    def pending(self):
        """Records waiting in the spool (metadata files outside dead-letter/ and orphaned/).

        `<name>.open.json` is not one: it describes the segment being written (one per
        recording camera), which is queued only when it closes."""
        n = 0
        for root, dirs, files in os.walk(self.spool):
            dirs[:] = [d for d in dirs if d not in ("dead-letter", "orphaned")]
            n += sum(1 for f in files if f.endswith(".json") and not f.endswith(".open.json"))
        return n

    def files_under(self, sub):
        d = os.path.join(self.spool, sub)
        return [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs] if os.path.isdir(d) else []

    def camera_status(self):
        try:
            r = Client(f"127.0.0.1:{self.ig}").call(INGEST, "ListCameraStatus", {"site": self.site})
            return {s["camera"]["camera"]: s for s in r.get("cameras", [])}
        except Exception as e:  # noqa: BLE001 - a status read during a fault may fail; report it
            return {"error": str(e)}

    def wait_segments(self, n, timeout=120):
        """Until every camera has closed n segments in this ingest process."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.camera_status()
            if all(int(st.get(c, {}).get("segments_total", 0)) >= n for c in self.cams):
                return True
            time.sleep(1)
        return False

    def wait_drained(self, timeout):
        """Seconds until the spool is empty, or None."""
        t = time.time()
        while time.time() - t < timeout:
            if self.pending() == 0:
                return time.time() - t
            time.sleep(0.5)
        return None

    def logs(self):
        return "".join(f"--- {w}.log ---\n{tail(os.path.join(self.work, w + '.log'))}" for w in ("storage", "ingest"))


# ---- what storage holds, checked without Kordon ---------------------------------------------------
def listing(c, method, field, body):
    out, token = [], ""
    while True:
        r = c.call(STORAGE, method, dict(body, page={"page_size": 1000, "page_token": token}))
        out += r.get(field, [])
        token = r.get("page", {}).get("next_page_token", "")
        if not token:
            return out


def probe_frames(path, decode=True):
    """ffprobe's frame count (decoded, or packets read when not `decode`) and the packets' times
    (None when it cannot read it)."""
    count = "-count_frames" if decode else "-count_packets"
    field = "nb_read_frames" if decode else "nb_read_packets"
    p = subprocess.run(["ffprobe", "-v", "error", count, "-show_entries",
                        f"stream=codec_name,width,{field}:packet=pts_time", "-of", "json", path],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        return None
    out = json.loads(p.stdout)
    s = out.get("streams", [{}])[0]
    s["nb_read_frames"] = s.get(field, 0)
    s["pts"] = sorted(float(k["pts_time"]) for k in out.get("packets", []) if "pts_time" in k)
    return s if s.get("codec_name") == "h264" else None


def verify(camp, rig, cam, start_us, end_us=None):
    """Every segment of one camera since start_us: object = SHA-256, ffprobe decodes it; the
    timeline between the first and last segment is segments and registered gaps only."""
    c = rig.client()
    ref = {"site": rig.site, "camera": cam}
    rng = {"start": rfc3339(start_us)}
    if end_us:
        rng["end"] = rfc3339(end_us)
    segs = listing(c, "ListSegments", "segments", {"camera": ref, "range": rng, "audit": AUDIT})
    ranges = listing(c, "ListRecordings", "ranges", {"camera": ref, "range": rng, "audit": AUDIT})
    segs.sort(key=lambda s: ts(s["range"]["start"]))
    gaps = [r for r in ranges if r.get("kind") == "RECORDING_RANGE_KIND_GAP"]
    registered = [g for g in gaps if g.get("gap_reason") != "GAP_REASON_UNEXPLAINED"]
    unexplained_ranges = [g for g in gaps if g.get("gap_reason") == "GAP_REASON_UNEXPLAINED"]
    spans = merge([(ts(g["range"]["start"]), ts(g["range"]["end"])) for g in registered])
    bad, frozen = [], []
    tmp = os.path.join(rig.work, "check.mp4")
    decoded = 0
    for j, s in enumerate(segs):
        key = s["object_key"]
        dur = (ts(s["range"]["end"]) - ts(s["range"]["start"])) / 1e6
        # Every K-th segment is decoded, and every one a fault cut short or stretched; the rest
        # are read packet by packet (their bytes are the hashed ones either way).
        decode = j % camp.args.decode_every == 0 or abs(dur - rig.seg) > 0.1
        decoded += decode
        if not rig.get_object(key, tmp):
            bad.append((key, "object missing in the store"))
            continue
        with open(tmp, "rb") as fh:
            data = fh.read()
        if base64.b64encode(hashlib.sha256(data).digest()).decode() != s["sha256"]:
            bad.append((key, "SHA-256 differs from the index"))
            continue
        if len(data) != int(s.get("size_bytes", 0)):
            bad.append((key, f"{len(data)} bytes, index says {s.get('size_bytes')}"))
            continue
        st = probe_frames(tmp, decode)
        if st is None:
            bad.append((key, "ffprobe cannot read it"))
        elif int(st["nb_read_frames"]) < round(dur * FPS):
            # Whole and decodable, but it claims more time than it has frames: the missing
            # time is a frame held still (a long sample), not footage, and not a gap. The
            # longest hold: between two frames, or the last frame to the segment's end.
            pts = st["pts"]
            holds = [b - a for a, b in zip(pts, pts[1:])] + [dur - (pts[-1] - pts[0]) if pts else dur]
            frozen.append((key, round(dur - int(st["nb_read_frames"]) / FPS, 3), round(max(holds), 3)))
        elif int(st["nb_read_frames"]) > round(dur * FPS):
            bad.append((key, f"{st['nb_read_frames']} frames for {dur:.3f}s"))
    holes = []
    for a, b in zip(segs, segs[1:]):
        h = (ts(a["range"]["end"]), ts(b["range"]["start"]))
        if h[1] - h[0] > 1000:
            holes.append(h)
        elif h[1] - h[0] < -1000:
            holes.append(("overlap", h))
    silent = [h for h in holes if h[0] == "overlap" or not covered(h, spans)]
    seqs = [int(s["link"]["sequence"]) for s in segs]
    in_order = all(x < y for x, y in zip(seqs, seqs[1:]))
    recorded = sum(ts(s["range"]["end"]) - ts(s["range"]["start"]) for s in segs) / 1e6
    first = ts(segs[0]["range"]["start"]) if segs else 0
    last = ts(segs[-1]["range"]["end"]) if segs else 0
    gap_time = sum(max(0, min(b, last) - max(a, first)) for a, b in spans) / 1e6
    span = (last - first) / 1e6
    silent_s = sum((h[1] - h[0]) for h in silent if h[0] != "overlap") / 1e6
    frozen_s = sum(f[1] for f in frozen)
    # The shutdown's own gap (SIGTERM at the end) follows the last segment.
    trailing = [g for g in registered if ts(g["range"]["start"]) >= last - 1000
                and g.get("gap_reason") == "GAP_REASON_INGEST_RESTART"]
    return {"decoded": decoded, "frozen": frozen, "frozen_s": frozen_s, "trailing": trailing,
        "segs": segs, "gaps": registered, "unexplained": unexplained_ranges, "bad": bad, "silent": silent,
        "in_order": in_order, "recorded": recorded, "gap_time": gap_time, "span": span,
        "silent_s": silent_s, "first": first, "last": last,
    }


def check_camera(camp, rig, cam, v, allow_gaps=True, wall=None):
    """The checks every fault makes of every camera; returns the camera's row figures."""
    n = len(v["segs"])
    name = f"{rig.key}: {cam}"
    check(f"{name}: segments stored ({n})", n > 0)
    check(f"{name}: every object in RGW hashes to the index's SHA-256 and ffprobe reads it, "
          f"frames = duration x {FPS} ({v['decoded']} of {n} decoded)", not v["bad"], str(v["bad"][:5]))
    # A camera that drops a few frames under load is not an interruption; a second or more of a
    # frame held still, registered as recorded, is a hole that no gap explains.
    held = [f for f in v["frozen"] if f[2] >= HOLD_LIMIT]
    if v["frozen"]:
        say(f"    {cam}: {len(v['frozen'])} segments have fewer frames than their time "
            f"({v['frozen_s']:.2f}s in all; longest hold {max(f[2] for f in v['frozen']):.2f}s)")
    check(f"{name}: no segment holds a frame still for {HOLD_LIMIT:.0f}s or more instead of a gap",
          not held, f"{len(held)} segments (key, seconds missing, longest hold): {held[:5]}")
    check(f"{name}: every hole between segments is covered by registered gaps (no silent hole)",
          not v["silent"], str(v["silent"][:5]))
    check(f"{name}: storage reports no unexplained time", not v["unexplained"],
          str([(g["range"], g.get("gap_detail")) for g in v["unexplained"][:5]]))
    check(f"{name}: chain order follows time", v["in_order"])
    check(f"{name}: recorded + gaps = span ({v['recorded']:.1f}s + {v['gap_time']:.1f}s vs {v['span']:.1f}s)",
          abs(v["recorded"] + v["gap_time"] - v["span"]) < 0.05 + v["silent_s"] and v["silent_s"] == 0)
    if not allow_gaps:
        inner = [g for g in v["gaps"] if g not in v["trailing"]]
        check(f"{name}: no gap (but the shutdown's own after the last segment)", not inner,
              str([(g.get("gap_reason"), g["range"], g.get("gap_detail")) for g in inner[:5]]))
    if wall:
        a, b = wall
        check(f"{name}: the recording covers the run from its first segment to within two segments of its end",
              v["last"] >= b - 2 * rig.seg * 1e6, f"(last segment ends {(b - v['last']) / 1e6:.1f}s before)")
    expected = (v["span"] - v["gap_time"]) / rig.seg
    return expected, n, len(v["bad"]), v["silent_s"] + v["frozen_s"]


def settle(rig, drain_timeout=120):
    """Stops ingest (it closes its open segments and drains), waits for the spool, stops storage
    after verification by the caller."""
    t_stop = now_us()
    rc = rig.stop_proc(rig.ingest)
    check(f"{rig.key}: ingest exits 0 on SIGTERM", rc == 0, f"(rc {rc})")
    left = rig.pending()
    if left:
        # What SIGTERM's drain left is the next start's; start ingest again to drain it.
        rig.start_ingest()
        rig.wait_drained(drain_timeout)
        rig.stop_proc(rig.ingest)
    check(f"{rig.key}: spool empty at the end", rig.pending() == 0, f"({rig.pending()} records left)")
    dead = rig.files_under("dead-letter")
    check(f"{rig.key}: nothing in the dead-letter folder", not dead, str(dead[:5]))
    return t_stop


# ---- the faults ------------------------------------------------------------------------------------
def control(camp, cam, action, query=""):
    req = urllib.request.Request(f"http://127.0.0.1:{camp.control}/cameras/{cam}/{action}{query}", method="POST")
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def fault_flap(camp):
    n = camp.args.flaps or (6 if camp.args.quick else 100)
    rig = Rig(camp, "flap", cameras=(1, 2))
    rig.start()
    rig.wait_segments(1)
    rng = random.Random(camp.args.seed)
    events = []
    for k in range(n):
        kind = rng.choice(["stop", "stall"])
        outage = rng.uniform(1.0, 6.0 if camp.args.quick else 10.0)
        between = rng.uniform(3.0, 6.0 if camp.args.quick else 10.0)
        time.sleep(between)
        t0 = now_us()
        if kind == "stop":
            control(camp, 1, "stop")
            time.sleep(outage)
            control(camp, 1, "start")
        else:
            control(camp, 1, "stall", f"?seconds={outage:.2f}")
            time.sleep(outage)
        events.append((kind, t0, now_us()))
        if (k + 1) % 10 == 0 or k + 1 == n:
            say(f"    {k + 1}/{n} interruptions ({sum(e[0] == 'stop' for e in events)} stops, "
                f"{sum(e[0] == 'stall' for e in events)} stalls)")
    time.sleep(2 * camp.seg)
    t_end = settle(rig)
    rows = []
    for i, cam in enumerate(rig.cams):
        v = verify(camp, rig, cam, rig.t0)
        if i == 0:
            exp, st, lost, silent = check_camera(camp, rig, cam, v)
            spans = merge([(ts(g["range"]["start"]), ts(g["range"]["end"])) for g in v["gaps"]])
            missed, resumes = [], []
            for kind, a, b in events:
                hit = [s for s in spans if s[0] <= b and s[1] >= a]
                if not hit:
                    missed.append((kind, round((b - a) / 1e6, 2)))
                else:
                    resumes.append((hit[-1][1] - b) / 1e6)
            reasons = sorted({g.get("gap_reason", "?").removeprefix("GAP_REASON_") for g in v["gaps"]})
            say(f"    {cam}: {len(v['segs'])} segments, {len(v['gaps'])} gaps ({', '.join(reasons)}), "
                f"{len(events) - len(missed)}/{len(events)} interruptions found as gaps")
            for label, pick in (("stops", lambda e: e[0] == "stop"),
                                ("stalls under ingest's 5 s stall timeout",
                                 lambda e: e[0] == "stall" and e[2] - e[1] < 5e6),
                                ("stalls of 5 s or more", lambda e: e[0] == "stall" and e[2] - e[1] >= 5e6)):
                group = [e for e in events if pick(e)]
                nogap = [m for m in missed if any(pick(e) and m == (e[0], round((e[2] - e[1]) / 1e6, 2))
                                                  for e in group)]
                say(f"      {label}: {len(group) - len(nogap)} of {len(group)} are gaps")
            check(f"flap: every interruption ({len(events)}) is a registered gap with a reason",
                  not missed, f"without a gap: {missed[:10]} ({len(missed)})")
            check("flap: every gap has a reason", all(g.get("gap_reason") not in (None, "GAP_REASON_UNSPECIFIED")
                                                     for g in v["gaps"]))
            rec = (f"median {statistics.median(resumes):.1f}s, max {max(resumes):.1f}s" if resumes else "-")
            rows.append(("camera flapping", f"{n} stops/stalls at random: each a gap with a reason",
                         exp, st, lost, silent, rec, cam))
        else:
            exp, st, lost, silent = check_camera(camp, rig, cam, v, allow_gaps=False, wall=(rig.t0, t_end))
            rows.append(("  (neighbour camera)", "untouched: no gap", exp, st, lost, silent, "-", cam))
    rig.stop()
    return rows


def outage_fault(camp, key, label, expect, stop, start, down_s, database_url=None):
    rig = Rig(camp, key, database_url=database_url)
    rig.start()
    ok = rig.wait_segments(1)
    check(f"{key}: recording before the fault", ok, rig.logs())
    m0 = rig.metrics()
    say(f"    fault: {label}")
    stop()
    t_down = time.time()
    peak = 0
    while time.time() - t_down < down_s:
        peak = max(peak, rig.pending())
        time.sleep(1)
    start()
    t_up = time.time()
    say(f"    back after {t_up - t_down:.0f}s; {rig.pending()} records spooled (peak {peak})")
    check(f"{key}: the spool held the footage during the outage (peak {peak} records)",
          peak >= max(1, int(down_s / camp.seg) - 2))
    alive = rig.storage.poll() is None and rig.ingest.poll() is None
    check(f"{key}: storage and ingest kept running through the outage", alive,
          f"storage rc {rig.storage.poll()}, ingest rc {rig.ingest.poll()}\n{rig.logs()}")
    drained = rig.wait_drained(120 + down_s / 2)
    check(f"{key}: the spool drained after the outage", drained is not None, f"({rig.pending()} left)\n{rig.logs()}")
    m1 = rig.metrics()
    failed_uploads = m1.get("kordon_ingest_upload_failures_total", 0) - m0.get("kordon_ingest_upload_failures_total", 0)
    say(f"    drained in {drained if drained is None else round(drained, 1)}s; "
        f"{failed_uploads:.0f} failed attempts retried")
    time.sleep(camp.seg)
    t_end = settle(rig)
    rows = []
    for cam in rig.cams:
        v = verify(camp, rig, cam, rig.t0)
        exp, st, lost, silent = check_camera(camp, rig, cam, v, allow_gaps=False, wall=(rig.t0, t_end))
        rec = f"drained {drained:.0f}s after" if drained is not None else "never drained"
        rows.append((label if cam == rig.cams[0] else "", expect if cam == rig.cams[0] else "",
                     exp, st, lost, silent, rec, cam))
    rig.stop()
    return rows


def fault_rgw(camp):
    down = camp.args.rgw_seconds or (30 if camp.args.quick else 600)
    return outage_fault(camp, "rgw", f"object storage down {down / 60:.1f} min",
                        "spool fills, drains in order, no gap, nothing lost",
                        lambda: camp.services.sh("stop-rgw"), lambda: camp.services.sh("start-rgw"), down)


def fault_postgres(camp):
    down = camp.args.pg_seconds or (20 if camp.args.quick else 120)
    db = f"faults_{camp.run_id.replace('-', '_')}"
    camp.services.psql(f"CREATE DATABASE {db} OWNER kordon")
    url = f"postgres://kordon@127.0.0.1:{camp.services.pg_port}/{db}"
    return outage_fault(camp, "postgres", f"index database down {down / 60:.1f} min",
                        "registrations retry, no gap, nothing lost",
                        lambda: camp.services.sh("stop-postgres"), lambda: camp.services.sh("start-postgres"),
                        down, database_url=url)


def fault_kill(camp):
    kills = camp.args.kills or (2 if camp.args.quick else 5)
    rig = Rig(camp, "kill")
    rig.start()
    rig.wait_segments(1)
    rng = random.Random(camp.args.seed + 4)
    events, parts = [], 0
    for k in range(kills):
        time.sleep(rng.uniform(camp.seg + 1, (2 if camp.args.quick else 3) * camp.seg))
        parts += any(f.endswith(".part") for _, _, fs in os.walk(rig.spool) for f in fs)
        t_kill = now_us()
        rig.ingest.send_signal(signal.SIGKILL)
        rig.ingest.wait()
        time.sleep(rng.uniform(1, 4))
        t_start = now_us()
        rig.start_ingest()
        events.append((t_kill, t_start))
        say(f"    SIGKILL {k + 1}/{kills}, restarted after {(t_start - t_kill) / 1e6:.1f}s")
    rig.wait_segments(2)
    t_end = settle(rig)
    orphaned = rig.files_under("orphaned")
    say(f"    {parts}/{kills} kills hit an open segment file; {len(orphaned)} files moved to orphaned/")
    check("kill: each SIGKILL hit an open (partial) segment", parts == kills, f"({parts} of {kills})")
    rows = []
    for cam in rig.cams:
        v = verify(camp, rig, cam, rig.t0)
        exp, st, lost, silent = check_camera(camp, rig, cam, v, wall=(rig.t0, t_end))
        spans = merge([(ts(g["range"]["start"]), ts(g["range"]["end"])) for g in v["gaps"]
                       if g.get("gap_reason") == "GAP_REASON_INGEST_RESTART"])
        missed = [e for e in events if not any(a <= e[1] and b >= e[0] for a, b in spans)]
        check(f"kill: {cam}: each kill is an `ingest restart` gap", not missed, str(missed))
        resumes = [next(b for a, b in spans if a <= e[1] and b >= e[0]) - e[1] for e in events if e not in missed]
        rec = f"max {max(resumes) / 1e6:.1f}s after restart" if resumes else "-"
        rows.append(("ingest SIGKILLed mid-segment" if cam == rig.cams[0] else "",
                     f"{kills} kills: each an ingest-restart gap" if cam == rig.cams[0] else "",
                     exp, st, lost, silent, rec, cam))
    rig.stop()
    return rows


def fault_diskfull(camp):
    if os.geteuid() != 0:
        say("    SKIPPED: mounting a tmpfs for the spool needs root")
        return [("spool disk full", "skipped (needs root)", 0, 0, 0, 0, "-", "")]
    hold = camp.args.full_seconds or (15 if camp.args.quick else 60)
    mnt = os.path.join(camp.work, "spool-tmpfs")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt], check=True)
    try:
        rig = Rig(camp, "diskfull", spool_dir=mnt, spool_max=camp.args.spool_max_mib << 20)
        rig.start()
        rig.wait_segments(1)
        m0 = rig.metrics()
        # Another writer takes every byte the filesystem has, and whatever the uploader frees
        # as it drains, until the hold ends: the spool stays full.
        filling = threading.Event()
        filling.set()

        def fill(path):
            with open(path, "wb", buffering=0) as f:
                while filling.is_set():
                    try:
                        while True:
                            f.write(b"\0" * (64 << 10))
                    except OSError:
                        time.sleep(0.05)

        ballast = os.path.join(mnt, "ballast")
        filler = threading.Thread(target=fill, args=(ballast,))
        t_full = now_us()
        filler.start()
        time.sleep(1)
        say(f"    spool filesystem filled ({os.path.getsize(ballast) >> 20} MiB ballast); holding {hold}s")
        time.sleep(hold / 2)
        st = rig.camera_status()
        errs = {c: st.get(c, {}).get("last_error", "") for c in rig.cams}
        time.sleep(hold / 2)
        m1 = rig.metrics()
        filling.clear()
        filler.join()
        os.remove(ballast)
        t_free = now_us()
        say(f"    space returned; status errors while full: {errs}")
        check("diskfull: cameras report the refusal in their status (condition)",
              all("spool" in e for e in errs.values()), str(errs))
        counted = {k: m1.get(k, 0) - m0.get(k, 0) for k in
                   ("kordon_ingest_spool_refused_total", "kordon_ingest_gaps_total", "kordon_ingest_segments_total",
                    "kordon_ingest_reconnects_total")}
        say(f"    metrics while full: {counted}")
        check("diskfull: a metric counts the refused footage while the disk is full",
              counted["kordon_ingest_spool_refused_total"] > 0, str(counted))
        check("diskfull: ingest kept running", rig.ingest.poll() is None, rig.logs())
        rig.wait_segments(int(rig.camera_status().get(rig.cams[0], {}).get("segments_total", 0)) + 2, 60)
        # Media files whose record never made it into the spool: footage neither stored nor kept
        # in the queue (the next start moves them to orphaned/).
        stray = [os.path.join(r, f) for r, ds, fs in os.walk(mnt) for f in fs
                 if f.endswith(".mp4") and not os.path.exists(os.path.join(r, f[:-4] + ".json"))
                 and "orphaned" not in r and "dead-letter" not in r]
        stray_bytes = sum(os.path.getsize(p) for p in stray if os.path.exists(p))
        say(f"    after space returned: {len(stray)} segment files in the spool without a record "
            f"({stray_bytes >> 10} KiB): {[os.path.basename(p) for p in stray[:4]]}")
        check("diskfull: no closed segment's media is stranded in the spool without its record",
              not stray, f"({len(stray)} files, {stray_bytes} bytes)")
        # The spool's own account of its bytes (what its ceiling is checked against) must come
        # back to what is on disk once it drained: reservations of refused segments released.
        rig.wait_drained(60)
        time.sleep(2)
        on_disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(mnt) for f in fs
                      if "orphaned" not in r and "dead-letter" not in r)
        parts = [f for _, _, fs in os.walk(mnt) for f in fs if f.endswith(".part")]
        accounted = rig.metrics().get("kordon_ingest_spool_bytes", 0)
        say(f"    drained: kordon_ingest_spool_bytes {int(accounted) >> 10} KiB, files on disk {on_disk >> 10} KiB, "
            f"{len(parts)} .part files (one per camera is the open segment)")
        check("diskfull: the spool's byte account returns to what is on disk (no leaked reservations)",
              accounted <= on_disk + len(rig.cams) * (8 << 20), f"({int(accounted)} accounted, {on_disk} on disk)")
        check("diskfull: no partial segment files left behind but the open ones",
              len(parts) <= len(rig.cams), f"({len(parts)}: {parts[:5]})")
        t_end = settle(rig)
        rows = []
        for cam in rig.cams:
            v = verify(camp, rig, cam, rig.t0)
            exp, st_, lost, silent = check_camera(camp, rig, cam, v, wall=(rig.t0, t_end))
            spans = [(ts(g["range"]["start"]), ts(g["range"]["end"])) for g in v["gaps"]
                     if g.get("gap_reason") == "GAP_REASON_SPOOL_OVERFLOW"]
            check(f"diskfull: {cam}: the full period is a spool-overflow gap",
                  any(a <= t_free and b >= t_full for a, b in spans), str([(g.get('gap_reason'), g.get('gap_detail'))
                                                                         for g in v["gaps"]]))
            before = [s for s in v["segs"] if ts(s["range"]["end"]) <= t_full]
            after = [s for s in v["segs"] if ts(s["range"]["start"]) >= t_free]
            check(f"diskfull: {cam}: footage stored before the disk filled is kept ({len(before)} segments)", before)
            rec = f"{(ts(after[0]['range']['start']) - t_free) / 1e6:.1f}s after space returned" if after else "never"
            check(f"diskfull: {cam}: recording resumed when space returned", bool(after))
            rows.append(("spool disk full" if cam == rig.cams[0] else "",
                         f"{hold}s full: refused with a condition, kept, resumes" if cam == rig.cams[0] else "",
                         exp, st_, lost, silent, rec, cam))
        rig.stop()
        return rows
    finally:
        subprocess.run(["umount", "-l", mnt])


def faked_clock(env, offset=None, file=None):
    """`env` with libfaketime preloaded: the wall clock offset (e.g. "+31d"), or read from `file`
    (re-read every few seconds, so it can be stepped while the process runs). Monotonic clocks
    are left alone, as a real wall-clock step leaves them."""
    env = dict(env, LD_PRELOAD=FAKETIME_LIB, FAKETIME_DONT_FAKE_MONOTONIC="1")
    if file:
        env.update(FAKETIME_TIMESTAMP_FILE=file, FAKETIME_CACHE_DURATION="1")
    else:
        env["FAKETIME"] = offset
    return env


def stream(c, service, method, body, timeout=300):
    """A server-streaming call; the responses as dicts."""
    from google.protobuf import json_format, message_factory

    m = c.pool.FindServiceByName(service).FindMethodByName(method)
    req_cls = message_factory.GetMessageClass(m.input_type)
    resp_cls = message_factory.GetMessageClass(m.output_type)
    call = c.channel.unary_stream(f"/{service}/{method}", request_serializer=req_cls.SerializeToString,
                                  response_deserializer=resp_cls.FromString)
    return [json_format.MessageToDict(r, preserving_proto_field_name=True)
            for r in call(json_format.ParseDict(body, req_cls()), timeout=timeout)]


def fault_retention(camp):
    """Storage SIGKILLed during retention sweeps, again and again, then left to finish: every
    expired segment is deleted exactly as retention promises (access-log entry first, object
    gone, record kept as a tombstone so the chain verifies), whatever moment the kill hit."""
    if not os.path.exists(FAKETIME_LIB):
        say(f"    SKIPPED: {FAKETIME_LIB} missing (Debian package libfaketime)")
        return [("storage killed during retention", "skipped (no libfaketime)", 0, 0, 0, 0, "-", "")]
    kills = camp.args.retention_kills or (4 if camp.args.quick else 8)
    # Sweeps every second; nothing expires until storage's clock is 31 days ahead (the
    # default retention is 30 days).
    # Local files: storage's clock a month ahead would fail every signed S3 request (RGW allows
    # 15 minutes of skew), which is not what this fault is about.
    # Short segments and two cameras: a sweep long enough to be killed in its middle.
    rig = Rig(camp, "retention", cameras=(1, 2), storage_extra="  retention_interval: 1s\n", local_objects=True,
              segment=2)
    rig.start()
    rig.wait_segments(20 if camp.args.quick else 45, 300)
    settle(rig)
    segs = {}
    for cam in rig.cams:
        v = verify(camp, rig, cam, rig.t0)
        check_camera(camp, rig, cam, v)
        segs[cam] = v["segs"]
    total = sum(len(v) for v in segs.values())
    rig.stop_proc(rig.storage)
    db = os.path.join(rig.data, "index.sqlite")

    def rows():
        import sqlite3

        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT camera, sequence, object_key, deleted_at_us FROM segments WHERE site = ?",
                               (rig.site,)).fetchall()
        finally:
            con.close()

    def state():
        """(tombstoned, live, live whose object is gone from the store) over this rig's segments."""
        rows_ = rows()
        dead = [r for r in rows_ if r[3] is not None]
        live = [r for r in rows_ if r[3] is None]
        tmp = os.path.join(rig.work, "probe.mp4")
        gone = [r for r in live if not rig.get_object(r[2], tmp)]
        return dead, live, gone

    later = faked_clock(rig.env, offset="+31d")
    rng = random.Random(camp.args.seed + 7)
    windows = []
    for k in range(kills):
        before = sum(r[3] is not None for r in rows())
        rig.start_storage(env=later)
        # The first sweep starts a second after storage is up: kill it a moment after its first
        # deletion of this round is committed, i.e. in the middle of the sweep.
        t = time.time()
        while time.time() - t < 30 and sum(r[3] is not None for r in rows()) == before:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.01))
        rig.storage.send_signal(signal.SIGKILL)
        rig.storage.wait()
        dead, live, gone = state()
        windows.append(len(gone))
        say(f"    SIGKILL {k + 1}/{kills}: {len(dead)} deleted, {len(live)} left "
            f"({len(gone)} of them with the object already gone)")
        if not live:
            break
    t_up = time.time()
    rig.start_storage(env=later)
    deadline = time.time() + 120
    while time.time() < deadline:
        dead, live, gone = state()
        if not live:
            break
        time.sleep(1)
    took = time.time() - t_up
    say(f"    after the last restart: {len(dead)} deleted, {len(live)} left in {took:.1f}s")
    check(f"retention: every expired segment is deleted in the end ({len(dead)} of {total})",
          not live and len(dead) == total, f"{len(live)} left\n{rig.logs()}")
    check("retention: a kill leaves at most one record per camera whose object is gone but which is "
          f"not yet marked deleted (the one in flight) ({windows})", max(windows or [0]) <= len(rig.cams))
    tmp = os.path.join(rig.work, "probe.mp4")
    left = [s["object_key"] for v in segs.values() for s in v if rig.get_object(s["object_key"], tmp)]
    check("retention: no deleted segment's object is left in the bucket", not left, str(left[:5]))
    c = rig.client()
    logged = set()
    entries = [e for e in listing(c, "ListAccessLog", "entries", {"site": rig.site, "actions": ["ACCESS_ACTION_DELETE"], "audit": AUDIT})]
    for e in entries:
        for o in e.get("objects", []):
            logged.add((o.get("camera", {}).get("camera"), int(o.get("id", "0"))))
    unlogged = [(cam, int(s["link"]["sequence"])) for cam, v in segs.items() for s in v
                if (cam, int(s["link"]["sequence"])) not in logged]
    say(f"    {len(entries)} DELETE entries in the access log name {len(logged)} segments")
    check("retention: every deleted segment is named in a DELETE access-log entry", not unlogged, str(unlogged[:5]))
    rows = []
    for cam, v in segs.items():
        rep = [r["report"] for r in stream(c, STORAGE, "VerifyChain", {
            "camera": {"site": rig.site, "camera": cam}, "range": {"start": rfc3339(rig.t0 - 60_000_000)},
            "audit": AUDIT}) if "report" in r]
        rep = rep[-1] if rep else {}
        check(f"retention: {cam}: the chain verifies intact with {len(v)} tombstones "
              f"({rep.get('retention_deleted', 0)} deleted by retention, {len(rep.get('findings', []))} findings)",
              rep.get("intact") is True and int(rep.get("retention_deleted", 0)) == len(v), str(rep)[:800])
    vlog = c.call(STORAGE, "VerifyAccessLog", {"site": rig.site})
    check(f"retention: the access log verifies intact ({vlog.get('entries_checked')} entries)",
          vlog.get("intact") is True, str(vlog)[:800])
    bad = total - len(dead) + len(left) + len(unlogged)
    rows.append(("storage SIGKILLed during retention",
                 f"{len(windows)} kills mid-sweep: each segment deleted once, logged, chain intact",
                 float(total), len(dead), bad, 0.0, f"all deleted {took:.1f}s after the last restart", ""))
    rig.stop()
    return rows


def fault_clock(camp):
    """The wall clock of ingest and storage stepped +1 h and back (libfaketime; the camera's own
    clock is not stepped, as a node's NTP step leaves cameras alone), with camera sessions and an
    ingest restart on each side of the steps: segments stay whole, never overlap, the chain's
    order follows time and every hole is a gap with a reason."""
    if not os.path.exists(FAKETIME_LIB):
        say(f"    SKIPPED: {FAKETIME_LIB} missing (Debian package libfaketime)")
        return [("wall clock stepped", "skipped (no libfaketime)", 0, 0, 0, 0, "-", "")]
    rig = Rig(camp, "clock")
    clock = os.path.join(rig.work, "faketime")
    with open(clock, "w") as f:
        f.write("+0\n")
    rig.env = faked_clock(rig.env, file=clock)
    rig.start()
    rig.wait_segments(2, 300)

    def segments():
        return int(rig.camera_status().get(rig.cams[0], {}).get("segments_total", 0))

    def step(to, label):
        with open(clock, "w") as f:
            f.write(f"{to}\n")
        time.sleep(3)
        say(f"    wall clock of ingest and storage {label} (now {to} from the real time)")

    def camera_restart():
        control(camp, 1, "stop")
        time.sleep(2)
        control(camp, 1, "start")

    step("+1h", "stepped 1 h ahead")
    rig.wait_segments(segments() + 2, 300)
    camera_restart()
    rig.wait_segments(segments() + 2, 300)
    step("+0", "stepped 1 h back")
    rig.wait_segments(segments() + 2, 300)
    camera_restart()
    rig.wait_segments(segments() + 2, 300)
    rig.stop_proc(rig.ingest)
    rig.start_ingest()
    rig.wait_segments(2, 300)
    t_end = settle(rig)
    rows = []
    c = rig.client()
    for cam in rig.cams:
        v = verify(camp, rig, cam, rig.t0 - 7_200_000_000, t_end + 7_200_000_000)
        exp, st, lost, silent = check_camera(camp, rig, cam, v)
        gaps = [(g.get("gap_reason", "?").removeprefix("GAP_REASON_"), round((ts(g["range"]["end"]) - ts(g["range"]["start"])) / 1e6, 1))
                for g in v["gaps"]]
        say(f"    {cam}: {len(v['segs'])} segments from {rfc3339(v['first'])} to {rfc3339(v['last'])} "
            f"(real time {rfc3339(rig.t0)} to {rfc3339(t_end)}); gaps {gaps}")
        rep = [r["report"] for r in stream(c, STORAGE, "VerifyChain", {
            "camera": {"site": rig.site, "camera": cam}, "range": {"start": rfc3339(rig.t0 - 7_200_000_000)},
            "audit": AUDIT}) if "report" in r]
        rep = rep[-1] if rep else {}
        check(f"clock: {cam}: the chain verifies intact ({rep.get('segments_checked', 0)} segments)",
              rep.get("intact") is True, str(rep)[:800])
        rows.append(("wall clock stepped +1 h and back" if cam == rig.cams[0] else "",
                     "segments whole, no overlap, chain in time order" if cam == rig.cams[0] else "",
                     exp, st, lost, silent, "-", cam))
    vlog = c.call(STORAGE, "VerifyAccessLog", {"site": rig.site})
    check(f"clock: the access log verifies intact ({vlog.get('entries_checked')} entries)",
          vlog.get("intact") is True, str(vlog)[:800])
    rig.stop()
    return rows


def fault_export(camp):
    return export_fault(camp, "export", "storage (kordon storage) SIGKILLed during an export")


def fault_export_rgw(camp):
    return export_fault(camp, "export-rgw", "object storage (Ceph) restarted during an export")


def export_fault(camp, key, label):
    rig = Rig(camp, key)
    rig.start()
    rig.wait_segments(3 if camp.args.quick else 8, 180)
    server = ["--server", f"http://127.0.0.1:{rig.sg}"]
    cams = [a for c in rig.cams for a in ("--camera", f"{rig.site}/{c}")]
    bundle = os.path.join(rig.work, "bundle.tar")
    # Stop ingest first, so that the footage exported is fixed.
    rig.stop_proc(rig.ingest)
    # A fixed range: a retry must repeat the request exactly (`--since` would move it).
    window = ["--from", rfc3339(rig.t0 - 10_000_000)[:19] + "Z", "--to", rfc3339(now_us())[:19] + "Z"]
    base = [camp.kordon, "evidence", "export", *cams, *window, "--case", "FAULTS-6",
            "--reason", "fault campaign", "--recipient", "nobody", "--request-id", f"faults-{key}-{camp.run_id}",
            "-o", bundle, *server]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    p = subprocess.Popen(base, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = {}

    def read():
        seen["err"] = p.stderr.read()

    th = threading.Thread(target=read)
    th.start()
    time.sleep(camp.args.export_kill_after)
    raced = p.poll() is None
    if key == "export":
        rig.storage.send_signal(signal.SIGKILL)
        rig.storage.wait()
    else:
        camp.services.sh("stop-rgw")
    p.wait(timeout=300)
    th.join()
    err = seen.get("err", "")
    say(f"    {label}, {camp.args.export_kill_after}s in (export still running then: {raced}); "
        f"export exit {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    if p.returncode == 0:
        check(f"{key}: interrupted export either completes (and verified) or fails", "verified" in err, err[-500:])
    else:
        check(f"{key}: interrupted export fails with a message and leaves no bundle file",
              bool(err.strip()) and not os.path.exists(bundle), err[-500:])
    m = re.search(r"bundle ([0-9a-f-]{8,})", err)
    first_id = m.group(1) if m else None
    time.sleep(1)
    if key == "export":
        rig.start_storage()
    else:
        camp.services.sh("start-rgw")
    t_up = time.time()
    # The same request id again: returns the first bundle, finished or failed clearly.
    outcomes = []
    ok_at = None
    for attempt in range(3):
        r = subprocess.run(base, env=env, capture_output=True, text=True, timeout=600)
        outcomes.append((r.returncode, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""))
        if r.returncode == 0:
            ok_at = time.time()
            break
        time.sleep(2)
    say(f"    retries with the same request id: {outcomes}")
    if ok_at is None:
        # A fresh request id must work whatever happened to the first.
        r = subprocess.run([x if not x.startswith("faults-") else f"{x}-2" for x in base],
                           env=env, capture_output=True, text=True, timeout=600)
        outcomes.append(("new id", r.returncode, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""))
        check(f"{key}: a retry with the same request id completes after storage is back", False,
              f"{outcomes}\n{rig.logs()}")
        if r.returncode == 0:
            ok_at = time.time()
    else:
        check(f"{key}: a retry with the same request id completes after storage is back", True)
    key = ""
    verified = False
    if ok_at:
        key = next((ln.split()[-1] for ln in r.stderr.splitlines() if ln.startswith("site signing key")), "")
        v = subprocess.run([camp.kordon, "evidence", "verify", bundle, "--public-key", key, "--output", "json"],
                           env=env, capture_output=True, text=True, timeout=300)
        rep = json.loads(v.stdout or "{}")
        verified = v.returncode == 0 and rep.get("verdict") == "intact"
        check(f"{key}: `kordon evidence verify --public-key` says intact", verified, v.stdout[-500:] + v.stderr[-300:])
    if first_id:
        g = subprocess.run([camp.kordon, "evidence", "get", first_id, "--reason", "fault campaign",
                            "-o", os.path.join(rig.work, "first.tar"), *server],
                           env=env, capture_output=True, text=True, timeout=300)
        last = g.stderr.strip().splitlines()[-1] if g.stderr.strip() else ""
        say(f"    the interrupted bundle {first_id}: `kordon evidence get` exit {g.returncode}: {last}")
        check(f"{key}: the interrupted bundle is not left 'still being built' after the restart",
              "still being built" not in g.stderr, last)
    # The bundle's segments against what storage lists.
    rows = []
    t_end = now_us()
    for cam in rig.cams:
        v = verify(camp, rig, cam, rig.t0)
        exp, st, lost, silent = check_camera(camp, rig, cam, v)
        rows.append((label if cam == rig.cams[0] else "",
                     "export fails clearly, retry verifies" if cam == rig.cams[0] else "",
                     exp, st, lost, silent,
                     (f"export ok {ok_at - t_up:.1f}s after restart" if ok_at else "export never ok")
                     if cam == rig.cams[0] else "", cam))
    del t_end
    rig.stop()
    return rows


# ---- the campaign --------------------------------------------------------------------------------
class Campaign:
    def __init__(self, args):
        self.args = args
        self.kordon = os.path.abspath(args.kordon)
        self.seg = args.segment
        self.run_id = time.strftime("%m%d%H%M%S", time.gmtime())
        self.work = tempfile.mkdtemp(prefix="kordon-faults-")
        self.services = Services(args)
        self.rtsp, self.control = free_ports(2)
        self.camsim = None
        self.rigs = []

    def start(self):
        say(f"fault campaign {self.run_id} ({'quick' if self.args.quick else 'full'}), work dir {self.work}")
        t = time.time()
        self.services.start()
        say(f"  private Ceph RGW and PostgreSQL up ({time.time() - t:.0f}s): {self.services.vars['KORDON_TEST_S3_ENDPOINT']}")
        log = open(os.path.join(self.work, "camsim.log"), "w")
        self.camsim = subprocess.Popen(
            [self.kordon, "camsim", "--cameras", "2", "--listen", f"127.0.0.1:{self.rtsp}",
             "--control-listen", f"127.0.0.1:{self.control}"],
            env=dict(os.environ, KORDON_LOG="warn"), stdout=log, stderr=log)
        wait_port(self.control, 300)

    def finish(self):
        for rig in self.rigs:
            for p in (rig.ingest, rig.storage):
                if p and p.poll() is None:
                    p.kill()
                    p.wait()
        if self.camsim and self.camsim.poll() is None:
            self.camsim.terminate()
            self.camsim.wait(timeout=30)
        if not self.args.keep_services:
            # Both, whatever a fault left them in.
            try:
                self.services.sh("stop")
            except SystemExit as e:
                say(str(e))


def fmt_table(rows):
    head = ("fault", "expected", "segments expected", "stored", "lost", "time to recover", "verdict")
    lines = [head]
    for r in rows:
        lines.append(r)
    w = [max(len(str(l[i])) for l in lines) for i in range(len(head))]
    out = []
    for k, l in enumerate(lines):
        out.append("  ".join(str(x).ljust(w[i]) for i, x in enumerate(l)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w[i] for i in range(len(head))))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--quick", action="store_true", help="short outages, few flaps (CI)")
    ap.add_argument("--only", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    ap.add_argument("--segment", type=int, default=6, help="segment length, seconds (a multiple of camsim's 2 s GOP)")
    ap.add_argument("--flaps", type=int, default=0, help="camera interruptions (default 100, quick 6)")
    ap.add_argument("--rgw-seconds", type=int, default=0, help="RGW outage (default 600, quick 30)")
    ap.add_argument("--pg-seconds", type=int, default=0, help="PostgreSQL outage (default 120, quick 20)")
    ap.add_argument("--kills", type=int, default=0, help="ingest SIGKILLs (default 5, quick 2)")
    ap.add_argument("--full-seconds", type=int, default=0, help="spool disk full for (default 60, quick 15)")
    ap.add_argument("--spool-max-mib", type=int, default=0,
                    help="diskfull: ingest's spool_max_bytes in MiB (default: ingest's own default)")
    ap.add_argument("--retention-kills", type=int, default=0, help="storage SIGKILLs during retention (default 8, quick 3)")
    ap.add_argument("--export-kill-after", type=float, default=0.5, help="seconds into the export storage is killed")
    ap.add_argument("--decode-every", type=int, default=0,
                    help="decode every K-th segment in full (default: all in --quick, 1 in 10 otherwise; "
                         "segments a fault cut short are always decoded)")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--services-cache", default="", help="KORDON_CACHE of the campaign's own services")
    ap.add_argument("--rgw-port", type=int, default=17480)
    ap.add_argument("--mon-port", type=int, default=16789)
    ap.add_argument("--pg-port", type=int, default=15433)
    ap.add_argument("--keep-services", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    args.decode_every = args.decode_every or (1 if args.quick else 10)
    chosen = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown faults {unknown}; known: {FAULTS}")
    camp = Campaign(args)
    table = []
    t_all = time.time()
    try:
        camp.start()
        for name in chosen:
            say(f"\n== {name}")
            t, p0, f0 = time.time(), passed(), failed()
            try:
                rows = globals()[f"fault_{name}"](camp)
            except Exception as e:  # noqa: BLE001 - one fault's crash must not hide the others' results
                import traceback

                traceback.print_exc()
                check(f"{name}: the fault ran to the end", False, repr(e))
                rows = [(name, "did not run to the end", 0, 0, 0, 0, "-", "")]
            verdict = "PASS" if failed() == f0 else f"FAIL ({failed() - f0} of {passed() - p0 + failed() - f0} checks)"
            say(f"   {name}: {verdict} in {time.time() - t:.0f}s")
            for k, r in enumerate(rows):
                fault, expect, exp, st, lost, silent, rec, cam = r
                lost_txt = f"{lost} bad, {silent:.1f}s silent" if (lost or silent) else "0"
                table.append((fault, expect, f"{exp:.1f}" + (f" ({cam})" if cam else ""), st, lost_txt, rec,
                              verdict if k == 0 else ""))
    finally:
        camp.finish()
        if not args.keep and not failed():
            shutil.rmtree(camp.work, ignore_errors=True)
        say("\n" + fmt_table(table))
        say(f"\ncampaign took {time.time() - t_all:.0f}s (work dir {camp.work}{'' if args.keep or failed() else ', removed'})")
        say(summary())
    sys.exit(1 if failed() else 0)


if __name__ == "__main__":
    main()
