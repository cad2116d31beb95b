#!/usr/bin/env python3
"""Benchmark (not a test): 1080p -> 360p renditions, Kordon's transcode pipeline beside ffmpeg,
on the same segment files in the same run.

Makes 1080p H.264 segments (4 Mbit/s, 25 fps, 6 s, self-contained fragmented MP4 like Kordon's)
from the real street clip, then transcodes all of them to 640x360 H.264 at 500 kbit/s with
x264's "veryfast" preset and one encoder thread:
  - Kordon: `bench_rendition` (the pipeline a rendition job runs: decodebin, videoscale,
    x264enc, fMP4 writing);
  - ffmpeg: `-i SEG -vf scale=640:360 -c:v libx264 -preset veryfast -b:v 500k -bf 0 -threads 1`.
Both decoders choose their own threads. Prints CPU seconds and the real-time factor per core
(footage seconds per CPU second) of each, median of --runs, and Kordon/ffmpeg; then the CPU an
automatic thumbnail costs per segment (first picture, 320 px, JPEG).

  python e2e/bench_transcode.py --example $CARGO_TARGET_DIR/debug/examples/bench_rendition
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile


def make_segments(work, clip, seconds, seg_s):
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", clip,
         "-t", str(seconds), "-vf", "scale=1920:1080", "-r", "25", "-c:v", "libx264", "-preset", "veryfast",
         "-b:v", "4M", "-g", "50", "-bf", "0", "-pix_fmt", "yuv420p",
         "-f", "hls", "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod",
         "-hls_time", str(seg_s), "-hls_fmp4_init_filename", "init.mp4",
         "-hls_segment_filename", os.path.join(work, "frag%d.m4s"), os.path.join(work, "src.m3u8")],
        check=True, cwd=work)
    init = open(os.path.join(work, "init.mp4"), "rb").read()
    out = []
    i = 0
    while os.path.exists(os.path.join(work, f"frag{i}.m4s")):
        p = os.path.join(work, f"seg{i}.mp4")
        with open(p, "wb") as f:
            f.write(init + open(os.path.join(work, f"frag{i}.m4s"), "rb").read())
        out.append(p)
        i += 1
    return out


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ffmpeg_run(segs, work):
    before = children_cpu()
    for s in segs:
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", s,
                        "-vf", "scale=640:360", "-c:v", "libx264", "-preset", "veryfast",
                        "-b:v", "500k", "-bf", "0", "-g", "300", "-threads", "1",
                        "-f", "mp4", os.path.join(work, "ff.mp4")], check=True)
    return children_cpu() - before


def kordon_run(example, segs):
    before = children_cpu()
    p = subprocess.run([example, "--height", "360", "--bitrate", "500000", *segs],
                       capture_output=True, text=True, check=True)
    cpu = children_cpu() - before
    return cpu, json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", required=True, help="the bench_rendition example binary")
    ap.add_argument("--clip", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "footage", "bikes.mp4"))
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="kordon-bench-transcode-")
    segs = make_segments(work, os.path.abspath(args.clip), args.seconds, 6)
    footage = args.seconds
    k, f, frames = [], [], 0
    for _ in range(args.runs):
        cpu, out = kordon_run(args.example, segs)
        k.append(cpu)
        frames = out["frames"]
        f.append(ffmpeg_run(segs, work))
    km, fm = statistics.median(k), statistics.median(f)
    print(f"1080p -> 360p, {len(segs)} segments, {footage} s of footage ({frames} frames), "
          f"median of {args.runs} runs, {os.cpu_count()} cores")
    print(f"  kordon transcode : {km:6.1f} CPU s   {footage / km:5.1f}x real time per core")
    print(f"  ffmpeg           : {fm:6.1f} CPU s   {footage / fm:5.1f}x real time per core")
    print(f"  kordon / ffmpeg CPU: {km / fm:.2f}")
    p = subprocess.run([args.example, "--thumbnails", *segs], capture_output=True, text=True, check=True)
    t = json.loads(p.stdout.strip().splitlines()[-1])
    per = t["cpu_seconds"] / t["thumbnails"]
    print(f"automatic thumbnails: {per * 1000:.0f} ms CPU per 1080p segment ({t['jpeg_bytes'] // t['thumbnails'] // 1000} KB JPEG), "
          f"i.e. {per / 6 * 100:.2f} % of a core per camera with 6 s segments")


if __name__ == "__main__":
    main()
