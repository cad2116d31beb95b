#!/usr/bin/env python3
"""Records from RTSP servers that are neither Kordon's camsim nor gst-rtsp-server, with
`kordon standalone` on local files + SQLite, and checks the footage with ffprobe.

    source scripts/lib.sh && install_external_rtsp_servers
    "$KORDON_VENV/bin/python" e2e/external_rtsp.py --kordon "$CARGO_TARGET_DIR/debug/kordon"

The servers, each fed by ffmpeg publishing (ANNOUNCE/RECORD) the project's clip re-encoded with
libx264 and looped (`-re -stream_loop -1`):
  - Debian's Perl RTSP::Server (librtsp-server-perl): serves RTP over UDP only and answers a TCP
    SETUP with `400 Bad Request`. Stream without B-frames. Read by two cameras: one left on the
    default transport (TCP first, so ingest must fall back to UDP on the 400) and one configured
    `transport: udp`.
  - npm's rtsp-streaming-server (Node): serves UDP only too (`461 Unsupported Transport` for TCP).
    Stream encoded with `bframes=2`, so ingest must carry reordered frames (pts != dts).

Checks: each server is UDP-only and plays in ffprobe by itself; ingest reports the retina source
over UDP for every camera; `kordon footage get --dir` (which checks each segment's SHA-256)
returns at least 3 segments per camera; every segment decodes in ffprobe (h264, 640x272) with
frames = duration x 25 (±1 for the last, cut at shutdown; up to FIRST_SEGMENT_LEAD more in a
B-frame session's first, whose first decode times lead by the SPS's reorder depth); segments are contiguous and no gap is
registered but the shutdown's own after the last segment (under 2 s); the B-frame
camera's segments hold B-frames (but a last segment, cut at shutdown, under SHORT_TAIL frames:
its few frames may be an I and a P) and the other cameras' hold none. Prints
`e2e: N passed, M failed` and exits non-zero on any failure.

Known: both servers relay the publisher's RTP packets and send no `RTP-Info`, so a reader joins
wherever the publisher is. When its first packet is the middle of a fragmented NAL (FU-A),
retina 0.4.21 fails the session ("FU-A has start bit unset while no frag in progress",
codec/h264.rs) instead of treating it as loss, and ingest reconnects 250 ms later, before any
frame was recorded. So a camera may show one reconnect and no gap.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from common import check, Client, failed, free_ports, summary, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
CLIP = os.path.join(HERE, "..", "assets", "footage", "bikes.mp4")
FPS = 25
SITE = "external"

# Perl's RTSP::Server as its Debian service script runs it, on our ports and loopback only.
PERL_SERVER = r"""
use strict; use warnings; use AnyEvent; use RTSP::Server;
my ($client, $source, $rtp) = @ARGV;
my $srv = RTSP::Server->new(client_listen_port => $client, source_listen_port => $source,
    rtp_start_port => $rtp, client_listen_address => '127.0.0.1',
    source_listen_address => '127.0.0.1');
$srv->listen;
my $cv = AnyEvent->condvar;
$SIG{TERM} = $SIG{INT} = sub { $cv->send };
$cv->recv;
"""

# npm's rtsp-streaming-server, as its README starts it.
NODE_SERVER = r"""
const RtspServer = require('rtsp-streaming-server').default;
const [serverPort, clientPort, rtpPortStart] = process.argv.slice(1).map(Number);
new RtspServer({ serverPort, clientPort, rtpPortStart, rtpPortCount: 200 }).start()
  .catch((e) => { console.error(e); process.exit(1); });
"""


def publish(clip, url, bframes, log):
    """ffmpeg looping the clip in real time, re-encoded by x264, published with ANNOUNCE/RECORD."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", "-re", "-stream_loop", "-1", "-i", clip,
         "-an", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-r", str(FPS),
         "-x264-params", f"keyint=50:min-keyint=50:scenecut=0:bframes={bframes}",
         "-f", "rtsp", url],
        stdout=log, stderr=log)


def probe_server(url, transport):
    return subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_entries",
         "stream=codec_name,width,height", "-of", "json", url],
        capture_output=True, text=True, timeout=30)


# Frames below which the last segment (cut by SIGTERM right after a key frame) need not hold a
# B-frame: x264's B-frames come between reference frames, so a tail of I, P has none.
SHORT_TAIL = 12
# How many frames longer than its frames a B-frame session's first segment may be (its lead).
FIRST_SEGMENT_LEAD = 2


def frames(path):
    """(codec, width, height, pict_types) of every decoded frame, from ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height:frame=pict_type", "-of", "json", path],
        capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return None
    doc = json.loads(out.stdout)
    st = doc["streams"][0]
    return st["codec_name"], st["width"], st["height"], [f.get("pict_type") for f in doc.get("frames", [])]


def rfc3339(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--seconds", type=int, default=20, help="recording time after the first segment")
    ap.add_argument("--node-modules", default=os.environ.get("KORDON_NODE_RTSP_MODULES"),
                    help="node_modules holding rtsp-streaming-server (scripts/lib.sh sets it)")
    ap.add_argument("--clip", default=CLIP)
    args = ap.parse_args()
    if not args.node_modules:
        raise SystemExit("--node-modules or KORDON_NODE_RTSP_MODULES: source scripts/lib.sh; install_external_rtsp_servers")
    kordon = os.path.abspath(args.kordon)
    work = tempfile.mkdtemp(prefix="kordon-external-rtsp-")
    print(f"external RTSP servers -> kordon standalone (work dir {work})")
    perl_client, perl_source, node_client, node_source, grpc_port, admin, http = free_ports(7)
    procs = []
    logs = {n: open(os.path.join(work, f"{n}.log"), "w") for n in ["perl", "node", "pub-perl", "pub-node", "kordon"]}

    def spawn(argv, log, env=None):
        p = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        procs.append(p)
        return p

    perl_url = f"rtsp://127.0.0.1:{perl_client}/perl-p"
    node_url = f"rtsp://127.0.0.1:{node_client}/node-b"
    cameras = {
        # name: (url, transport in config or None, B-frames expected)
        "perl-auto": (perl_url, None, False),
        "perl-udp": (perl_url, "udp", False),
        "node-bframes": (node_url, None, True),
    }
    kenv = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    kenv["KORDON_LOG"] = "warn,kordon_ingest=info"
    kproc = None
    try:
        spawn(["perl", "-e", PERL_SERVER, str(perl_client), str(perl_source), str(free_ports(1)[0] & ~1)],
              logs["perl"])
        spawn(["node", "-e", NODE_SERVER, str(node_source), str(node_client), str(free_ports(1)[0] & ~1)],
              logs["node"], env=dict(os.environ, NODE_PATH=args.node_modules))
        wait_port(perl_source)
        wait_port(node_source)
        procs.append(publish(args.clip, f"rtsp://127.0.0.1:{perl_source}/perl-p", 0, logs["pub-perl"]))
        procs.append(publish(args.clip, f"rtsp://127.0.0.1:{node_source}/node-b", 2, logs["pub-node"]))
        time.sleep(3)

        # The servers by themselves, read by ffprobe: they play over UDP and refuse TCP.
        for name, url, refusal in [("Perl RTSP::Server", perl_url, "400"),
                                   ("Node rtsp-streaming-server", node_url, "461")]:
            udp = probe_server(url, "udp")
            check(f"{name} plays over UDP in ffprobe", udp.returncode == 0 and '"h264"' in udp.stdout,
                  udp.stderr[-300:])
            tcp = probe_server(url, "tcp")
            check(f"{name} refuses RTP over TCP ({refusal})", tcp.returncode != 0 and refusal in tcp.stderr,
                  tcp.stderr[-300:])

        cfg = os.path.join(work, "kordon.yaml")
        with open(cfg, "w") as f:
            f.write(f"ingest:\n  segment_duration: 4s\nsites:\n  - name: {SITE}\n    cameras:\n")
            for name, (url, transport, _) in cameras.items():
                f.write(f"      - name: {name}\n        record: {url}\n")
                if transport:
                    f.write(f"        transport: {transport}\n")
        common = ["--config", cfg, "--data-dir", os.path.join(work, "data"),
                  "--grpc-listen", f"127.0.0.1:{grpc_port}", "--admin-listen", f"127.0.0.1:{admin}",
                  "--http-listen", f"127.0.0.1:{http}"]
        kproc = subprocess.Popen([kordon, "standalone", *common], env=kenv, stdout=logs["kordon"],
                                 stderr=logs["kordon"])
        wait_port(grpc_port)
        c = Client(f"127.0.0.1:{grpc_port}")

        # Record until every camera closed a segment, then --seconds more.
        deadline = time.time() + 60
        statuses = {}
        while time.time() < deadline and kproc.poll() is None:
            resp = c.call("kordon.ingest.v1.IngestService", "ListCameraStatus", {"site": SITE})
            statuses = {s["camera"]["camera"]: s for s in resp.get("cameras", [])}
            if len(statuses) == len(cameras) and all(int(s.get("segments_total", 0)) > 0 for s in statuses.values()):
                break
            time.sleep(1)
        time.sleep(args.seconds)
        resp = c.call("kordon.ingest.v1.IngestService", "ListCameraStatus", {"site": SITE})
        statuses = {s["camera"]["camera"]: s for s in resp.get("cameras", [])}
        for name in cameras:
            s = statuses.get(name, {})
            print(f"    {name}: {s.get('state')} {s.get('source')} {s.get('transport')} "
                  f"segments {s.get('segments_total', 0)} reconnects {s.get('reconnects', 0)} "
                  f"last error {s.get('last_error', '')!r}")
            check(f"{name}: recorded by retina over UDP",
                  s.get("source") == "RTSP_SOURCE_RETINA" and s.get("transport") == "RTSP_TRANSPORT_UDP", str(s))
            # A reconnect before the first frame loses nothing (see "Known" above); a gap would.
            check(f"{name}: no gap while recording", int(s.get("gaps_total", 0)) == 0, str(s))

        # SIGTERM finalises the last segment of each camera.
        kproc.send_signal(signal.SIGTERM)
        kproc.wait(timeout=60)
        check("standalone exits 0 after SIGTERM", kproc.returncode == 0, f"rc {kproc.returncode}")
        kproc = subprocess.Popen([kordon, "storage", *common], env=dict(kenv, KORDON_DEV_IDENTITY="1"),
                                 stdout=logs["kordon"], stderr=logs["kordon"])
        wait_port(grpc_port)
        for name, (_, _, bframes) in cameras.items():
            seg_dir = os.path.join(work, "segments", name)
            p = subprocess.run([kordon, "footage", "get", "--camera", f"{SITE}/{name}", "--since", "1h",
                                "--reason", "e2e external rtsp", "--dir", seg_dir,
                                "--server", f"http://127.0.0.1:{grpc_port}"],
                               env=kenv, capture_output=True, text=True, timeout=120)
            index = json.load(open(os.path.join(seg_dir, "index.json"))) if p.returncode == 0 else {}
            segs = index.get("segments", [])
            check(f"{name}: footage get --dir returns >= 3 segments, hashes checked", p.returncode == 0 and len(segs) >= 3,
                  f"({len(segs)}) {p.stderr[-300:]}")
            bad, with_b, total_frames, total_dur, short_tail = [], 0, 0, 0.0, 0
            for j, s in enumerate(segs):
                dur = rfc3339(s["to"]) - rfc3339(s["from"])
                got = frames(os.path.join(seg_dir, s["file"]))
                want = round(dur * FPS)
                # The last segment is cut at shutdown. With B-frames, the first segment of a
                # session may also run a frame or two longer than its frames: its first decode
                # times are set the SPS's reorder depth ahead, before the stream's actual
                # reordering (which varies with x264's adaptive B-frames) is seen.
                last = j == len(segs) - 1
                # Allowed: want - lead <= frames <= want + tail.
                tail = 1 if last else 0
                lead = max(tail, FIRST_SEGMENT_LEAD if bframes and j == 0 else 0)
                with_b += bool(got) and "B" in got[3]
                if not got or got[:3] != ("h264", 640, 272) or not want - lead <= len(got[3]) <= want + tail:
                    bad.append((s["file"], round(dur, 3), want, got and (got[:3], len(got[3]))))
                    continue
                total_frames += len(got[3])
                total_dur += dur
                if j == len(segs) - 1 and len(got[3]) < SHORT_TAIL and "B" not in got[3]:
                    short_tail = 1
            check(f"{name}: every segment decodes in ffprobe (h264 640x272), frames = duration x {FPS}",
                  segs and not bad, str(bad[:3]))
            p = subprocess.run([kordon, "footage", "list", "--camera", f"{SITE}/{name}", "--since", "1h",
                                "--reason", "e2e external rtsp", "--output", "json",
                                "--server", f"http://127.0.0.1:{grpc_port}"],
                               env=kenv, capture_output=True, text=True, timeout=60)
            ranges = json.loads(p.stdout or "[]") if p.returncode == 0 else None
            gaps = [r for r in ranges or [] if r["kind"] != "recorded"]
            # The only gap allowed is the shutdown's own, after the last segment (the B-frame
            # camera's recorded timeline ends ~0.1 s before SIGTERM, cause not yet found).
            tail = [(rfc3339(g["to"]) - rfc3339(g["from"])) for g in gaps
                    if g["gap_reason"] == "ingest restart" and abs(rfc3339(g["from"]) - rfc3339(segs[-1]["to"])) < 0.001] if segs else []
            # 2 s: the frames held back for B-frame reordering (~0.1-0.2 s here) plus a loaded
            # machine's delay between SIGTERM and the last frame read.
            check(f"{name}: no gap registered but the shutdown's own (< 2 s)",
                  ranges is not None and len(gaps) == len(tail) and all(t < 2.0 for t in tail),
                  str(gaps or p.stderr[-300:]))
            if tail:
                print(f"    {name}: shutdown gap {tail[0]:.3f}s after the last segment")
            holes = [(a["to"], b["from"]) for a, b in zip(segs, segs[1:])
                     if abs(rfc3339(b["from"]) - rfc3339(a["to"])) > 0.001]
            check(f"{name}: segments are contiguous", not holes, str(holes[:3]))
            if bframes:
                check(f"{name}: every segment holds B-frames (but a last one of < {SHORT_TAIL} frames)",
                      segs and with_b + short_tail == len(segs), f"({with_b} of {len(segs)})")
                if short_tail:
                    print(f"    {name}: the last segment, cut at shutdown, has under {SHORT_TAIL} frames and no B-frame")
            else:
                check(f"{name}: no segment holds B-frames", with_b == 0, f"({with_b} of {len(segs)})")
            print(f"    {name}: {len(segs)} segments, {total_dur:.2f}s, {total_frames} frames")
    finally:
        for p in [kproc, *reversed(procs)]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        print(f"{summary()} (work dir {work})")
    sys.exit(1 if failed() else 0)


if __name__ == "__main__":
    main()
