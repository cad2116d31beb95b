#!/usr/bin/env python3
"""Transcode end to end through the `kordon` CLI, against `kordon standalone`.

Starts standalone (simulated 1080p cameras showing the real street clip, local files, SQLite,
automatic thumbnails on) and waits until burgas/port-gate has recorded more than two minutes.
Then:
  - `kordon transcode status` names the encoder in use;
  - automatic thumbnails are made for new segments (metrics);
  - a 2-minute range becomes a 360p rendition (`submit rendition --wait`), which `ffprobe` and
    `ffmpeg` (not Kordon) play through storage's HLS URL (`kordon footage play --profile`);
    sizes before and after are printed;
  - an evidence bundle with a viewer copy (time burned in, a privacy mask, people blurred)
    verifies offline; a frame of the copy is extracted beside the original's (with --frames-dir
    the two PNGs are kept, e.g. for docs/);
  - a second rendition job is SIGKILLed with the whole process mid-way; after a restart it
    resumes and ends with the same output hash as the uninterrupted job;
  - a bad request (no reason, bad profile) is refused and queues nothing.
Prints `e2e: N passed, M failed` and exits non-zero on any failure.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.request

from common import check, failed, free_ports, run, summary

RANGE_S = 120


def start(kordon, work, ports, env, log):
    grpc_port, admin_port, http_port = ports
    return subprocess.Popen(
        [kordon, "standalone", "--config", os.path.join(work, "kordon.yaml"),
         "--data-dir", os.path.join(work, "data"),
         "--grpc-listen", f"127.0.0.1:{grpc_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
         "--http-listen", f"127.0.0.1:{http_port}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def rfc(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--frames-dir", help="keep the original and viewer-copy frames here (PNG)")
    args = ap.parse_args()
    kordon = os.path.abspath(args.kordon)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    env["KORDON_LOG"] = "warn"
    work = tempfile.mkdtemp(prefix="kordon-transcode-")
    with open(os.path.join(work, "kordon.yaml"), "w") as f:
        f.write("transcode:\n  thumbnails:\n    automatic: true\n    poll: 5s\n")
    ports = free_ports(3)
    server = ["--server", f"http://127.0.0.1:{ports[0]}"]
    log = open(os.path.join(work, "standalone.log"), "w")
    print(f"transcode via the CLI (standalone in {work})")
    proc = start(kordon, work, ports, env, log)
    cam = ["--camera", "burgas/port-gate"]
    try:
        # More than two minutes of footage.
        deadline = time.time() + RANGE_S + 240
        ranges = []
        while time.time() < deadline:
            time.sleep(5)
            if proc.poll() is not None:
                break
            p = run(kordon, ["footage", "list", *cam, "--since", "1h", "--reason", "e2e transcode",
                             "--output", "json", *server], env, 30)
            if p.returncode == 0:
                ranges = [r for r in json.loads(p.stdout) if r["kind"] == "recorded"]
                if ranges and _secs(ranges[-1]) >= RANGE_S + 8:
                    break
        ok = bool(ranges) and _secs(ranges[-1]) >= RANGE_S + 8
        check(f"standalone records more than {RANGE_S + 8} s of burgas/port-gate", ok,
              f"(got {ranges[-1] if ranges else None}; log {work}/standalone.log)")
        if not ok:
            return
        t0 = _ts(ranges[-1]["from"]) + 1
        t1 = t0 + RANGE_S
        window = ["--from", rfc(t0), "--to", rfc(t1)]

        p = run(kordon, ["transcode", "status", "--output", "json", *server], env)
        st = json.loads(p.stdout or "{}")
        check("transcode status names the encoder in use (x264enc) and automatic thumbnails",
              any(e["selected"] and e["element"] == "x264enc" for e in st.get("encoders", []))
              and st.get("automatic_thumbnails"), p.stdout[-400:] + p.stderr[-300:])

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/metrics", timeout=10).read().decode()
        made = sum(float(l.split()[-1]) for l in metrics.splitlines()
                   if l.startswith('kordon_transcode_auto_thumbnails_total{outcome="made"}'))
        check("automatic thumbnails are made for new segments", made >= 2, f"(made {made})")

        # A refused request queues nothing.
        before = json.loads(run(kordon, ["transcode", "list", "--output", "json", *server], env).stdout or "[]")
        p = run(kordon, ["transcode", "submit", "rendition", *cam, *window, "--profile", "Bad Profile",
                         "--bitrate", "500k", "--reason", "x", *server], env)
        q = run(kordon, ["transcode", "submit", "rendition", *cam, *window, "--profile", "p",
                         "--bitrate", "500k", "--reason", "", *server], env)
        after = json.loads(run(kordon, ["transcode", "list", "--output", "json", *server], env).stdout or "[]")
        check("a bad profile and a missing reason are refused, naming the field, and queue nothing",
              p.returncode != 0 and "spec.rendition.profile" in p.stderr
              and q.returncode != 0 and "audit.reason" in q.stderr and len(after) == len(before),
              p.stderr[-300:] + q.stderr[-300:])

        # The rendition.
        started = time.time()
        p = run(kordon, ["transcode", "submit", "rendition", *cam, *window, "--profile", "360p-500k",
                         "--bitrate", "500k", "--height", "360", "--reason", "rendition for the partner link",
                         "--case", "BG-E2E-14", "--wait", "--output", "json", *server], env, 900)
        job = json.loads(p.stdout) if p.returncode == 0 else {}
        took = time.time() - started
        check("a 2-minute range becomes a 360p rendition (submit --wait)",
              job.get("state") == "succeeded" and len(job.get("outputs", [])) >= 19,
              p.stderr[-600:])
        if not job:
            return
        print(f"    rendition: {len(job['outputs'])} segments, {job['frames']} frames in {took:.0f} s "
              f"({RANGE_S / took:.1f}x real time while standalone records 4 cameras)")
        p = run(kordon, ["footage", "get", *cam, *window, "--reason", "size comparison",
                         "--dir", os.path.join(work, "orig"), *server], env, 300)
        index = json.load(open(os.path.join(work, "orig", "index.json"))) if p.returncode == 0 else {}
        seqs = {o["source_sequence"] for o in job["outputs"]}
        orig = sum(s["size_bytes"] for s in index.get("segments", []) if s["sequence"] in seqs)
        rend = sum(o["size_bytes"] for o in job["outputs"])
        print(f"    sizes: originals {orig / 1e6:.1f} MB (1920x1080), rendition {rend / 1e6:.1f} MB "
              f"(640x360), {orig / max(rend, 1):.1f}x smaller")
        check("the rendition is much smaller than the originals (> 5x)", orig > 5 * rend > 0,
              f"({orig} vs {rend})")

        p = run(kordon, ["footage", "play", *cam, *window, "--profile", "360p-500k",
                         "--reason", "play the rendition", *server], env)
        url = p.stdout.strip()
        check("kordon footage play --profile prints an HLS URL", p.returncode == 0 and url.startswith("http"),
              p.stderr[-300:])
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
             "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", url],
            capture_output=True, text=True, timeout=300)
        s = (json.loads(probe.stdout or "{}").get("streams") or [{}])[0]
        frames = int(s.get("nb_read_frames", 0) or 0)
        check("ffprobe plays the rendition through storage's HLS (h264 640x360, ~2 min of frames)",
              s.get("codec_name") == "h264" and s.get("width") == 640 and s.get("height") == 360
              and frames >= (RANGE_S - 12) * 25, f"({s}) {probe.stderr[-300:]}")
        dec = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-f", "null", "-"],
                             capture_output=True, text=True, timeout=300)
        check("ffmpeg decodes the whole rendition playlist without an error",
              dec.returncode == 0 and not dec.stderr.strip(), dec.stderr[-400:])

        # Evidence bundle with a viewer copy: burned-in time, a privacy mask, people blurred.
        bundle = os.path.join(work, "bundle.tar")
        vt1 = t0 + 20
        p = run(kordon, ["evidence", "export", *cam, "--from", rfc(t0), "--to", rfc(vt1),
                         "--burn-in-time", "--time-zone", "Europe/Sofia",
                         "--mask", "burgas/port-gate:0,0.55;0.28,0.55;0.28,1;0,1", "--blur-people",
                         "--case", "BG-2026-0143", "--reason", "disclosure to the defence",
                         "--recipient", "Defence counsel", "-o", bundle, *server], env, 900)
        check("an evidence bundle with a viewer copy builds and verifies offline",
              p.returncode == 0 and "verified" in p.stderr and "viewer" in (p.stderr + p.stdout).lower(),
              p.stderr[-800:])
        if p.returncode == 0:
            with tarfile.open(bundle) as t:
                names = t.getnames()
                copy = next((n for n in names if n.startswith("viewer/")), None)
                manifest = json.load(t.extractfile("manifest.json"))
                if copy:
                    t.extract(copy, work, filter="data")
            vc = (manifest.get("viewer_copies") or [{}])[0]
            check("the manifest lists the copy with its hash and transformation, originals kept",
                  copy is not None and vc.get("sha256") and "people" in json.dumps(vc).lower()
                  and any(n.endswith(".mp4") and not n.startswith("viewer/") for n in names),
                  json.dumps(vc)[:400])
            key = next((l.split()[-1] for l in p.stderr.splitlines()
                        if l.startswith("site signing key")), "")
            p = run(kordon, ["evidence", "verify", bundle, "--public-key", key], env)
            check("kordon evidence verify reports the viewer copy separately", p.returncode == 0
                  and "viewer" in (p.stdout + p.stderr).lower(), (p.stdout + p.stderr)[-400:])
            if copy:
                frames_dir = args.frames_dir or os.path.join(work, "frames")
                os.makedirs(frames_dir, exist_ok=True)
                # The same instant: 10 s into the copy, and the original at that time.
                ok = _frame(os.path.join(work, copy), 10.0, os.path.join(frames_dir, "viewer-copy.png"))
                first = sorted(s["file"] for s in index["segments"])
                ok2 = _frame_at(os.path.join(work, "orig"), index, 10.0, os.path.join(frames_dir, "original.png"))
                check("a frame of the viewer copy and the original frame at the same time are extracted",
                      ok and ok2, frames_dir)

        # Resume after SIGKILL: the same job, the same bytes.
        p = run(kordon, ["transcode", "submit", "rendition", *cam, *window, "--profile", "360p-resume",
                         "--bitrate", "500k", "--height", "360", "--reason", "resume check",
                         "--output", "json", *server], env)
        rj = json.loads(p.stdout) if p.returncode == 0 else {}
        done = 0
        deadline = time.time() + 300
        while rj and time.time() < deadline:
            g = run(kordon, ["transcode", "get", rj["id"], "--output", "json", *server], env)
            cur = json.loads(g.stdout or "{}")
            done = cur.get("done_units", 0)
            if done >= 4 or cur.get("state") in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        check("the second rendition was killed mid-way (SIGKILL of the process)",
              0 < done < len(job["outputs"]), f"(done {done})")
        proc = start(kordon, work, ports, env, log)
        p = run(kordon, ["transcode", "watch", rj.get("id", "-"), "--output", "json", *server], env, 900)
        for _ in range(30):
            if p.returncode == 0 or "unavailable" not in p.stderr:
                break
            time.sleep(2)
            p = run(kordon, ["transcode", "watch", rj.get("id", "-"), "--output", "json", *server], env, 900)
        fin = json.loads(p.stdout) if p.returncode == 0 else {}
        check("after a restart the killed job resumes and succeeds (attempt 2)",
              fin.get("state") == "succeeded" and fin.get("attempts") == 2, p.stderr[-400:] + p.stdout[-300:])
        check("the resumed job's outputs hash equals the uninterrupted job's",
              fin.get("outputs_sha256") and fin.get("outputs_sha256") == job.get("outputs_sha256"),
              f"({fin.get('outputs_sha256')} vs {job.get('outputs_sha256')})")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        print(summary())
        if not failed():
            shutil.rmtree(work, ignore_errors=True)
    raise SystemExit(1 if failed() else 0)


def _ts(s):
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _secs(r):
    return _ts(r["to"]) - _ts(r["from"])


def _frame(mp4, at, png):
    p = subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(at), "-i", mp4, "-frames:v", "1",
                        "-vf", "scale=960:-2", png], capture_output=True, text=True, timeout=120)
    return p.returncode == 0 and os.path.getsize(png) > 1000


def _frame_at(seg_dir, index, at, png):
    """The original frame `at` seconds after the first segment's start (segments joined)."""
    lst = os.path.join(seg_dir, "list.txt")
    with open(lst, "w") as f:
        for s in sorted(index["segments"], key=lambda s: s["sequence"]):
            f.write(f"file '{os.path.join(seg_dir, s['file'])}'\n")
    p = subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", lst,
                        "-ss", str(at), "-frames:v", "1", "-vf", "scale=960:-2", png],
                       capture_output=True, text=True, timeout=120)
    return p.returncode == 0 and os.path.getsize(png) > 1000


if __name__ == "__main__":
    main()
