#!/usr/bin/env python3
"""Benchmark (not a test): CPU per recorded camera, Kordon ingest vs `ffmpeg -c copy -f segment`.

In one run, against the same simulated cameras (`kordon camsim`, 1080p H.264 ~4 Mbit/s 25 fps):
  1. `kordon storage` + `kordon ingest` record M cameras for T seconds; the ingest process's CPU
     (user+sys from /proc) is measured after a warm-up, and segments are counted in storage.
  2. M `ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time 6` processes record the
     same streams for T seconds; their summed CPU is measured the same way.
Prints both figures per stream and the ratio, and memory: the ingest process's proportional set
size (PSS) at the end of the measurement and its peak RSS, per camera (fixed overhead included,
so an upper bound), beside the ffmpeg processes' summed PSS per stream. Everything runs on
127.0.0.1.

    python3 e2e/bench_ingest.py --kordon target/release/kordon --cameras 50 --seconds 40
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import cpu_seconds, free_ports, memory_kib, stop, wait_port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--cameras", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="kordon-bench-")
    rtsp, control = free_ports(2)
    env = dict(os.environ, KORDON_LOG="warn", KORDON_DEV_IDENTITY="1")
    camsim = subprocess.Popen(
        [args.kordon, "camsim", "--cameras", str(args.cameras), "--listen", f"127.0.0.1:{rtsp}",
         "--control-listen", f"127.0.0.1:{control}", "--source", "clip"], env=env)
    procs = [camsim]
    try:
        wait_port(control, timeout=300)
        urls = [f"rtsp://127.0.0.1:{rtsp}/cam{i}/main" for i in range(1, args.cameras + 1)]

        # Phase 1: Kordon.
        sg, sa, sh, ig, ia, ih = free_ports(6)
        cfg = os.path.join(work, "ingest.yaml")
        with open(cfg, "w") as f:
            f.write(f"ingest:\n  storage:\n    url: http://127.0.0.1:{sg}\n")
            f.write("storage:\n  objects:\n    kind: local\n    root: " + os.path.join(work, "media") + "\n")
            f.write("sites:\n  - name: bench\n    cameras:\n")
            for i, u in enumerate(urls, 1):
                f.write(f"      - name: cam-{i}\n        record: {u}\n")
        storage = subprocess.Popen(
            [args.kordon, "storage", "--config", cfg, "--data-dir", os.path.join(work, "k"),
             "--grpc-listen", f"127.0.0.1:{sg}", "--admin-listen", f"127.0.0.1:{sa}",
             "--http-listen", f"127.0.0.1:{sh}"], env=env)
        procs.append(storage)
        wait_port(sg)
        ingest = subprocess.Popen(
            [args.kordon, "ingest", "--config", cfg, "--data-dir", os.path.join(work, "k"),
             "--grpc-listen", f"127.0.0.1:{ig}", "--admin-listen", f"127.0.0.1:{ia}",
             "--http-listen", f"127.0.0.1:{ih}"], env=env)
        procs.append(ingest)
        t_start = time.time()
        time.sleep(args.warmup)
        c0, t0 = cpu_seconds(ingest.pid), time.time()
        cs0 = cpu_seconds(camsim.pid)
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(ingest.pid), time.time()
        cs1 = cpu_seconds(camsim.pid)
        kordon_pss, kordon_peak = memory_kib(ingest.pid)
        kordon_cpu = (c1 - c0) / (t1 - t0)
        recorded_for = time.time() - t_start
        # Ingest first: it closes the open segments and drains its spool into storage.
        stop([ingest])
        media = os.path.join(work, "media")
        segments = sum(len(fs) for _, _, fs in os.walk(media))
        spool = os.path.join(work, "k", "spool")
        left = sum(len(fs) for _, _, fs in os.walk(spool)) if os.path.isdir(spool) else 0
        stop([storage])

        # Phase 2: ffmpeg on the same streams.
        ff = []
        for i, u in enumerate(urls, 1):
            d = os.path.join(work, f"ff{i}")
            os.makedirs(d)
            ff.append(subprocess.Popen(
                ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", u,
                 "-c", "copy", "-f", "segment", "-segment_time", "6", "-reset_timestamps", "1",
                 os.path.join(d, "out%03d.mp4")]))
        procs.extend(ff)
        time.sleep(args.warmup)
        f0, t0 = sum(cpu_seconds(p.pid) for p in ff), time.time()
        time.sleep(args.seconds)
        f1, t1 = sum(cpu_seconds(p.pid) for p in ff), time.time()
        ffmpeg_pss = sum(memory_kib(p.pid)[0] for p in ff)
        ffmpeg_cpu = (f1 - f0) / (t1 - t0)
        stop(ff)

        m = args.cameras
        print(f"cameras: {m} x 1080p H.264 ~4 Mbit/s 25 fps, measured {args.seconds}s after {args.warmup}s warm-up")
        print(f"kordon ingest: {kordon_cpu * 100:.2f}% of a core in total, {kordon_cpu / m * 100:.3f}% per stream "
              f"({1 / (kordon_cpu / m):.0f} streams per core)")
        print(f"  {segments} segment objects stored for {m} cameras x {recorded_for:.0f}s "
              f"(about {m * recorded_for / 6:.0f} expected at 6 s), {left} files left in the spool")
        print(f"ffmpeg -c copy -f segment: {ffmpeg_cpu * 100:.2f}% in total, {ffmpeg_cpu / m * 100:.3f}% per stream "
              f"({1 / (ffmpeg_cpu / m):.0f} streams per core)")
        print(f"ratio kordon/ffmpeg: {kordon_cpu / ffmpeg_cpu:.2f} (target <= 0.5)")
        print(f"memory: kordon ingest PSS {kordon_pss / 1024:.1f} MiB ({kordon_pss / m / 1024:.2f} MiB per camera, "
              f"fixed overhead included), peak RSS {kordon_peak / 1024:.1f} MiB; "
              f"ffmpeg PSS {ffmpeg_pss / 1024:.1f} MiB summed ({ffmpeg_pss / m / 1024:.2f} MiB per stream)")
        print(f"camsim serving them: {(cs1 - cs0) / args.seconds * 100:.1f}% of a core")
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
