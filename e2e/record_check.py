#!/usr/bin/env python3
"""Records simulated cameras into Ceph RGW with `kordon standalone`, then checks the result with
tools that are not Kordon's: a gRPC client built from server reflection (Python grpcio), curl
for the objects in RGW, sha256 and ffprobe.

    eval "$(scripts/services.sh env)"
    python3 e2e/record_check.py --kordon target/debug/kordon --cameras 4 --seconds 60 \
        --stop-camera 1 --stop-for 20 [--rgw-outage 60]

Checks, per camera: every segment decodes (ffprobe) with frames matching its duration; its
object's SHA-256 equals the registered hash; segments are contiguous except where a gap is
registered; recorded + gap time covers the run within one segment. For the stopped camera: the
outage is a registered gap and recording resumed shortly after the camera returned. With
--rgw-outage: RGW is stopped mid-run, footage waits in the spool, and nothing is lost. Finally the
HLS playlist of one camera's whole range is read by ffprobe over HTTP.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import check, Client, failed, free_ports, summary, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))


def ts(s):
    """RFC 3339 from protobuf JSON -> microseconds."""
    from datetime import datetime

    frac = "0"
    base = s.rstrip("Z")
    if "." in base:
        base, frac = base.split(".")
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    epoch = (dt - datetime(1970, 1, 1)).total_seconds()
    return int(epoch) * 1_000_000 + int((frac + "000000")[:6])


AUDIT = {"reason": "record_check verification", "case_id": "E2E-1"}


def s3_get(key, env, out):
    url = f"{env['KORDON_TEST_S3_ENDPOINT']}/{env['KORDON_TEST_S3_BUCKET']}/{key}"
    subprocess.run(
        ["curl", "-sf", "--aws-sigv4", f"aws:amz:{env['KORDON_TEST_S3_REGION']}:s3",
         "--user", f"{env['KORDON_TEST_S3_ACCESS_KEY_ID']}:{env['KORDON_TEST_S3_SECRET_ACCESS_KEY']}",
         "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-o", out, url],
        check=True,
    )


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames", "-of", "json", path],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)["streams"][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--stop-camera", type=int, default=1)
    ap.add_argument("--stop-for", type=int, default=20)
    ap.add_argument("--rgw-outage", type=int, default=0)
    args = ap.parse_args()
    env = dict(os.environ)
    for k in ["KORDON_TEST_S3_ENDPOINT", "KORDON_TEST_S3_BUCKET"]:
        if k not in env:
            raise SystemExit(f"{k} is not set: eval \"$(scripts/services.sh env)\" first")
    work = tempfile.mkdtemp(prefix="kordon-record-check-")
    prefix = f"record-check-{int(time.time())}"
    rtsp, control = free_ports(2)
    grpc_port, admin, http = free_ports(3)
    cfg = os.path.join(work, "kordon.yaml")
    names = [f"cam-{i}" for i in range(1, args.cameras + 1)]
    with open(cfg, "w") as f:
        f.write(f"""storage:
  objects:
    kind: s3
    bucket: {env['KORDON_TEST_S3_BUCKET']}
    endpoint: {env['KORDON_TEST_S3_ENDPOINT']}
    region: {env['KORDON_TEST_S3_REGION']}
    access_key_id: {env['KORDON_TEST_S3_ACCESS_KEY_ID']}
    secret_access_key: {env['KORDON_TEST_S3_SECRET_ACCESS_KEY']}
    allow_http: true
sites:
  - name: edirne
    cameras:
""")
        for i, n in enumerate(names, 1):
            f.write(f"      - name: {n}\n        record: rtsp://127.0.0.1:{rtsp}/cam{i}/main\n")
    # The object keys get no prefix from config; keep runs apart by data dir only.
    kenv = dict(env, KORDON_LOG="warn,kordon_ingest=info")
    camsim = subprocess.Popen([args.kordon, "camsim", "--cameras", str(args.cameras),
                               "--listen", f"127.0.0.1:{rtsp}", "--control-listen", f"127.0.0.1:{control}"],
                              env=kenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(control, 300)
    common = ["--config", cfg, "--data-dir", os.path.join(work, "data"),
              "--grpc-listen", f"127.0.0.1:{grpc_port}", "--admin-listen", f"127.0.0.1:{admin}",
              "--http-listen", f"127.0.0.1:{http}"]
    log = open(os.path.join(work, "standalone.log"), "w")
    kordon = subprocess.Popen([args.kordon, "standalone", *common], env=kenv, stdout=log, stderr=log)
    try:
        wait_port(grpc_port, timeout=120)
        t_start = time.time()
        stop_at = t_start + max(5, (args.seconds - args.stop_for) / 2)
        stopped = returned = None
        rgw_at = t_start + 10 if args.rgw_outage else None
        rgw_down = rgw_up = None
        end = t_start + args.seconds
        while time.time() < end or (returned is None and stopped is not None):
            now = time.time()
            if stopped is None and now >= stop_at and args.stop_for:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{control}/cameras/{args.stop_camera}/stop", method="POST"))
                stopped = now
                print(f"camera {args.stop_camera} stopped at +{now - t_start:.1f}s")
            if stopped and returned is None and now >= stopped + args.stop_for:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{control}/cameras/{args.stop_camera}/start", method="POST"))
                returned = now
                print(f"camera {args.stop_camera} back at +{now - t_start:.1f}s")
            if rgw_at and rgw_down is None and now >= rgw_at:
                subprocess.run(["bash", os.path.join(HERE, "..", "scripts", "services.sh"), "stop-rgw"], check=True,
                               stdout=subprocess.DEVNULL)
                rgw_down = time.time()
                print(f"RGW stopped at +{rgw_down - t_start:.1f}s")
            if rgw_down and rgw_up is None and now >= rgw_down + args.rgw_outage:
                subprocess.run(["bash", os.path.join(HERE, "..", "scripts", "services.sh"), "start-rgw"], check=True,
                               stdout=subprocess.DEVNULL)
                rgw_up = time.time()
                print(f"RGW back at +{rgw_up - t_start:.1f}s")
            time.sleep(0.2)
        if rgw_down and rgw_up is None:
            subprocess.run(["bash", os.path.join(HERE, "..", "scripts", "services.sh"), "start-rgw"], check=True)
        # Let the spool drain while the server still runs, then stop it (SIGTERM drains too).
        time.sleep(8)
        t_stop = time.time()
        kordon.send_signal(signal.SIGTERM)
        kordon.wait(timeout=60)
        check("standalone exits 0 after SIGTERM", kordon.returncode == 0, f"rc {kordon.returncode}")
        spool = os.path.join(work, "data", "spool")
        left = [f for _, _, fs in os.walk(spool) for f in fs if not f.startswith(".")]
        check("spool empty after shutdown", not [f for f in left if f.endswith((".mp4", ".json"))], str(left[:5]))

        # Query with a storage-only server on the same index.
        kordon = subprocess.Popen([args.kordon, "storage", *common], env=dict(kenv, KORDON_DEV_IDENTITY="1"),
                                  stdout=log, stderr=log)
        wait_port(grpc_port, timeout=120)
        c = Client(f"127.0.0.1:{grpc_port}")
        seg_dir = os.path.join(work, "objects")
        os.makedirs(seg_dir)
        wall = t_stop - t_start
        for i, name in enumerate(names, 1):
            print(f"edirne/{name}")
            cam = {"site": "edirne", "camera": name}
            rng = {"start": "1970-01-01T00:00:00Z"}
            segs = c.call("kordon.storage.v1.StorageService", "ListSegments",
                          {"camera": cam, "range": rng, "audit": AUDIT, "page": {"page_size": 1000}}).get("segments", [])
            ranges = c.call("kordon.storage.v1.StorageService", "ListRecordings",
                            {"camera": cam, "range": rng, "audit": AUDIT}).get("ranges", [])
            gaps = [r for r in ranges if r.get("kind") == "RECORDING_RANGE_KIND_GAP"]
            check(f"{name}: segments recorded", len(segs) > 3, f"({len(segs)})")
            bad_hash = bad_decode = 0
            for j, s in enumerate(segs):
                path = os.path.join(seg_dir, f"{name}-{j}.mp4")
                s3_get(s["object_key"], env, path)
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).digest()
                import base64
                if base64.b64encode(digest).decode() != s["sha256"]:
                    bad_hash += 1
                st = probe(path)
                dur = (ts(s["range"]["end"]) - ts(s["range"]["start"])) / 1e6
                if not st or st["codec_name"] != "h264" or st["width"] != 1920 or abs(int(st["nb_read_frames"]) - round(dur * 25)) > 0:
                    bad_decode += 1
            check(f"{name}: every object's SHA-256 matches its record ({len(segs)} segments)", bad_hash == 0, f"({bad_hash} bad)")
            check(f"{name}: every segment decodes with ffprobe, frames = duration x 25", bad_decode == 0, f"({bad_decode} bad)")
            holes = []
            for a, b in zip(segs, segs[1:]):
                d = ts(b["range"]["start"]) - ts(a["range"]["end"])
                if abs(d) > 1000:
                    holes.append((ts(a["range"]["end"]), ts(b["range"]["start"])))
            gap_spans = [(ts(g["range"]["start"]), ts(g["range"]["end"])) for g in gaps]
            unexplained = [h for h in holes if not any(gs <= h[0] + 1000 and ge >= h[1] - 1000 for gs, ge in gap_spans)]
            check(f"{name}: every hole between segments is a registered gap", not unexplained, str(unexplained))
            recorded = sum(ts(s["range"]["end"]) - ts(s["range"]["start"]) for s in segs) / 1e6
            first, last = ts(segs[0]["range"]["start"]), ts(segs[-1]["range"]["end"])
            gap_time = sum(max(0, min(ge, last) - max(gs, first)) for gs, ge in gap_spans) / 1e6
            span = (last - first) / 1e6
            print(f"    {len(segs)} segments, {recorded:.1f}s recorded, {len(gaps)} gaps ({gap_time:.1f}s inside), "
                  f"span {span:.1f}s, wall {wall:.1f}s")
            check(f"{name}: recorded + gap time = span (contiguous timeline)", abs(recorded + gap_time - span) < 0.05,
                  f"({recorded:.3f} + {gap_time:.3f} vs {span:.3f})")
            check(f"{name}: recorded + gaps cover the wall time within one segment (6 s)", wall - span < 6.0,
                  f"(span {span:.1f}s, wall {wall:.1f}s)")
            if i == args.stop_camera and args.stop_for:
                outage = [g for g in gaps if g.get("gap_reason") == "GAP_REASON_STREAM_LOST"]
                check(f"{name}: the outage is a gap (stream lost)", bool(outage), str(gaps))
                if outage:
                    g = outage[0]
                    length = (ts(g["range"]["end"]) - ts(g["range"]["start"])) / 1e6
                    resumed = ts(g["range"]["end"]) / 1e6 - returned
                    print(f"    outage gap {length:.1f}s; recording resumed {resumed:.2f}s after the camera returned")
                    check(f"{name}: recording resumed within 2 s of the camera's return", resumed < 2.0, f"({resumed:.2f}s)")
            elif args.rgw_outage:
                check(f"{name}: RGW outage left no gap", not gaps or all(g.get("gap_reason") == "GAP_REASON_INGEST_RESTART" for g in gaps), str(gaps))
        # HLS playback of the last camera's whole range, read by ffprobe over HTTP.
        url = c.call("kordon.storage.v1.StorageService", "GetPlaybackUrl",
                     {"camera": {"site": "edirne", "camera": names[-1]},
                      "range": {"start": segs[0]["range"]["start"], "end": segs[-1]["range"]["end"]},
                      "audit": AUDIT})
        hls = url.get("playback", url.get("url", {}))
        hls = hls.get("url") if isinstance(hls, dict) else hls
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", hls],
                             capture_output=True, text=True)
        dur = float(out.stdout.strip() or 0)
        print(f"    HLS {hls.split('?')[0]}: ffprobe duration {dur:.1f}s")
        check("HLS playlist plays in ffprobe over HTTP", out.returncode == 0 and dur > 10, out.stderr[-300:])
    finally:
        for p in (kordon, camsim):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        print(f"{summary('record_check')} (work dir {work})")
    sys.exit(1 if failed() else 0)


if __name__ == "__main__":
    main()
