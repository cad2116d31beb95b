#!/usr/bin/env python3
"""What the cameras saw, end to end, through the `kordon detections` CLI only.

    source scripts/lib.sh    # exports ORT_DYLIB_PATH, the ONNX Runtime library the detector loads
    "$KORDON_VENV/bin/python" e2e/detection_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon"

Starts `kordon standalone` on free loopback ports in a temporary data directory. Its demo cameras
(camsim serving the real street clip) each have a zone `road` (the lower 55 % of the frame,
y >= 0.45) and a line `crossing` from (0.5, 0.2) to (0.5, 1.0), direction both. It polls
`kordon detections list --output json` (never a fixed sleep as an assertion) until people,
vehicles, line crossings (--min-crossings comparable ones, see (c)), zone
presence and a multi-record track have been stored, or the deadline passes, then checks:
  (a) people and at least one vehicle class are detected; every box lies inside 0..1 with
      left < right and top < bottom, every confidence inside 0..1;
  (b) each camera track forms one lifecycle: exactly one `started` record and it comes first,
      at most one `ended` and it comes last, times never go back, one class and one
      track_started_at under one track id, detection ids unique; some tracks carry several
      records under one id (ids stay stable while the object moves);
  (c) every line crossing's reported direction agrees with the movement of the track's box
      bottom-centre across x = 0.5 between the track's previous record and the crossing record
      (derivation at LINE_RULE). A crossing on a track's first record (the object crossed
      between the frame that started the track, which is not stored, and the first record) is
      compared by the side of the line it is on then, when the next record confirms it moves
      on away from the line. The number checked is printed, and no crossing at all fails;
  (d) zone presence `road` is reported only for boxes whose bottom-centre y >= 0.45;
  (e) `kordon detections snapshot ID -o f.jpg --reason R --case C` writes a JPEG that ffprobe
      reads at the detect stream's size (ffprobe of camsim's sub stream), `kordon audit list`
      shows the read with its reason and case, and a snapshot without a reason is refused;
  (f) `kordon detections watch --since 2m --count N` replays the stored detections that `list`
      returned and never prints one id twice;
  (g) stored detections are linked to the recorded segment their frame lies in
      (`segment_sequence`) within 2 minutes, and each sampled link is the segment whose range
      holds the detection's time, as `kordon footage get --dir` lists the segments;
and that standalone exits 0 on SIGTERM. Prints `e2e: N passed, M failed`; exits non-zero on any
failure. The work directory (with standalone's log) is kept when a check fails.
"""

import argparse
import collections
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from common import check, failed, free_ports, run, summary, wait_port

# The COCO "vehicle" super-category the model's labels come from.
VEHICLES = {"bicycle", "car", "motorcycle", "bus", "truck", "train", "boat", "airplane"}
ZONE_TOP = 0.45
LINE_X = 0.5
# standalone's DEMO_CAMERAS (bin/kordon/src/serve.rs): camera -> camsim index (cam<i>/sub).
DEMO_CAMSIM_INDEX = {"burgas/port-gate": 1, "burgas/pier-2": 2, "edirne/kapikule-1": 3, "edirne/kapikule-2": 4}

# LINE_RULE. The proto: "left and right are as seen standing on the line's point a and facing
# point b in the image". Here a = (0.5, 0.2) and b = (0.5, 1.0): standing on a, one faces down
# the image (+y). The image's x grows to the right of the picture, y grows downwards; a viewer
# facing +y (towards the bottom of the picture) has the picture's right (+x) on their LEFT hand
# and the picture's left (-x) on their RIGHT hand (as a person walking towards the camera has
# their right hand on the picture's left). So x < 0.5 is the line's right side and x > 0.5 its
# left side: moving from x < 0.5 to x > 0.5 is RIGHT_TO_LEFT, from x > 0.5 to x < 0.5 is
# LEFT_TO_RIGHT. (Same in vectors: with cross(a, b, p) = (b-a) x (p-a) in image coordinates,
# cross = -0.8 (p.x - 0.5), negative — left — for p.x > 0.5.)


def expected_direction(x_before, x_after):
    if x_before < LINE_X < x_after:
        return "right-to-left"
    if x_before > LINE_X > x_after:
        return "left-to-right"
    return None


def comparable_crossing(recs, i):
    """(x before, x after) to judge the crossing on record i of a track, or None.

    After a previous record: the movement between the two. On the first record: the object is
    past the line now and came from the other side (mirrored about x = 0.5), provided the next
    record shows it moving on away from the line (else the side alone proves nothing)."""
    after = bottom_centre(recs[i]["box"])[0]
    if i > 0:
        return bottom_centre(recs[i - 1]["box"])[0], after
    if len(recs) < 2 or after == LINE_X:
        return None
    nxt = bottom_centre(recs[1]["box"])[0]
    if (after - LINE_X) * (nxt - after) <= 0:
        return None
    return 2 * LINE_X - after, after


def bottom_centre(box):
    left, top, right, bottom = box
    return (left + right) / 2, bottom


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def ort_env(env):
    """The ONNX Runtime library for the detector: ORT_DYLIB_PATH as scripts/lib.sh exports it,
    else the one in this interpreter's onnxruntime wheel (the project venv)."""
    if env.get("ORT_DYLIB_PATH"):
        return env
    libs = sorted(glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "onnxruntime",
                                         "capi", "libonnxruntime.so.*")))
    if libs:
        env["ORT_DYLIB_PATH"] = libs[0]
    return env


def tracks_of(dets):
    """(camera, track_id) -> the track's records in list order (the store's time order)."""
    t = collections.defaultdict(list)
    for d in dets:
        t[(d["camera"], d["track_id"])].append(d)
    return t


def ready(dets, min_crossings):
    """What has been seen so far, and whether it is enough to check everything."""
    classes = {d["class"] for d in dets}
    tracks = tracks_of(dets)
    comparable = sum(len(r["crossings"]) for t in tracks.values() for i, r in enumerate(t)
                     if comparable_crossing(t, i) is not None)
    seen = {
        "person": "person" in classes,
        "vehicle": bool(classes & VEHICLES),
        f"{min_crossings} comparable crossings": comparable >= min_crossings,
        "zone": any(z["zone"] == "road" for d in dets for z in d["zones"]),
        "long track": any(len(t) >= 3 for t in tracks.values()),
        "snapshot": any(d["snapshot_id"] for d in dets),
    }
    return seen, all(seen.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--deadline", type=int, default=600,
                    help="seconds to wait for detections of every kind (the machine may be slow)")
    ap.add_argument("--min-crossings", type=int, default=3,
                    help="comparable crossings (see (c)) to wait for")
    args = ap.parse_args()
    kordon = os.path.abspath(args.kordon)
    env = ort_env({k: v for k, v in os.environ.items() if not k.startswith("KORDON_")})
    # `kordon=info` logs where the simulated cameras listen (for ffprobe of the detect stream).
    env["KORDON_LOG"] = "warn,kordon=info"
    work = tempfile.mkdtemp(prefix="kordon-detection-")
    grpc_port, admin_port, http_port = free_ports(3)
    server = ["--server", f"http://127.0.0.1:{grpc_port}"]
    print(f"detections via the CLI (standalone in {work})")
    log_path = os.path.join(work, "standalone.log")
    log = open(log_path, "w")
    t0 = time.time()
    proc = subprocess.Popen(
        [kordon, "standalone", "--data-dir", os.path.join(work, "data"),
         "--grpc-listen", f"127.0.0.1:{grpc_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
         "--http-listen", f"127.0.0.1:{http_port}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)

    def list_all():
        # The whole run, whatever its length, so that no track is cut at the window's start.
        minutes = int((time.time() - t0) // 60) + 2
        p = run(kordon, ["detections", "list", "--since", f"{minutes}m", "--limit", "1000000",
                         "--output", "json", *server], env, 120)
        return json.loads(p.stdout) if p.returncode == 0 else None, p

    try:
        wait_port(grpc_port, timeout=180)
        # Wait, polling, until every kind of record has been stored.
        deadline = t0 + args.deadline
        dets, seen, enough = [], {}, False
        while time.time() < deadline and proc.poll() is None:
            got, p = list_all()
            if got is not None:
                dets = got
                seen, enough = ready(dets, args.min_crossings)
                if enough:
                    break
            time.sleep(5)
        waited = time.time() - t0
        print(f"    {len(dets)} detections stored after {waited:.0f}s; seen: "
              + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in seen.items()))
        check(f"standalone stores detections of every kind within {args.deadline}s", enough,
              f"(seen {seen}; standalone {'exited ' + str(proc.returncode) if proc.poll() is not None else 'running'})")
        if not dets:
            return
        tracks = tracks_of(dets)
        by_camera = collections.Counter(d["camera"] for d in dets)
        print(f"    {len(tracks)} tracks on {len(by_camera)} cameras: "
              + ", ".join(f"{c} {n}" for c, n in sorted(by_camera.items())))

        # (a) classes and boxes.
        classes = collections.Counter(d["class"] for d in dets)
        print(f"    classes: {dict(classes)}")
        check("(a) people detected", classes["person"] > 0, str(dict(classes)))
        vehicles = {c: n for c, n in classes.items() if c in VEHICLES}
        check("(a) at least one vehicle class detected", bool(vehicles), str(dict(classes)))
        bad_box = [d for d in dets
                   if not (0 <= d["box"][0] < d["box"][2] <= 1 and 0 <= d["box"][1] < d["box"][3] <= 1
                           and 0 <= d["confidence"] <= 1)]
        check(f"(a) every box inside 0..1 (left < right, top < bottom) and confidence in 0..1 "
              f"({len(dets)} records)", not bad_box, str([(d["id"], d["box"], d["confidence"]) for d in bad_box[:3]]))

        # (b) one lifecycle per track.
        bad_life = []
        for key, recs in tracks.items():
            phases = [r["phase"] for r in recs]
            times = [ts(r["time"]) for r in recs]
            why = []
            if phases[0] != "started" or phases.count("started") != 1:
                why.append("not exactly one started, first")
            if phases.count("ended") > 1 or ("ended" in phases and phases[-1] != "ended"):
                why.append("ended not last or more than once")
            if any(b < a for a, b in zip(times, times[1:])):
                why.append("time goes back")
            if len({r["class"] for r in recs}) != 1 or len({r["track_started_at"] for r in recs}) != 1:
                why.append("class or track_started_at differs under one id")
            if why:
                bad_life.append((key, why, phases))
        check(f"(b) every track: one started first, ended last, one class and start under one id "
              f"({len(tracks)} tracks)", not bad_life, str(bad_life[:3]))
        ids = [d["id"] for d in dets]
        check("(b) detection ids unique", len(ids) == len(set(ids)), f"({len(ids) - len(set(ids))} repeated)")
        lengths = collections.Counter(len(r) for r in tracks.values())
        long_tracks = sum(n for k, n in lengths.items() if k >= 3)
        print(f"    records per track: {dict(sorted(lengths.items()))}")
        check("(b) track ids stable: some tracks carry >= 3 records under one id", long_tracks > 0,
              str(dict(lengths)))

        # (c) crossings against the movement of the box's bottom-centre (see LINE_RULE).
        agree, disagree, unverifiable = [], [], []
        per_camera = collections.Counter()
        for key, recs in tracks.items():
            for i, r in enumerate(recs):
                for x in r["crossings"]:
                    if x["line"] != "crossing":
                        continue
                    per_camera[key[0]] += 1
                    xs = comparable_crossing(recs, i)
                    if xs is None:
                        unverifiable.append((key, "on the track's first record, no next record moving on"))
                        continue
                    before, after = xs
                    want = expected_direction(before, after)
                    entry = (key, f"x {before:.3f} -> {after:.3f}", x["direction"], want)
                    if want is None:
                        unverifiable.append(entry)
                    elif want == x["direction"]:
                        agree.append(entry)
                    else:
                        disagree.append(entry)
        n_cross = len(agree) + len(disagree) + len(unverifiable)
        print(f"    crossings: {n_cross} ({', '.join(f'{c} {n}' for c, n in sorted(per_camera.items())) or 'none'}); "
              f"{len(agree)} agree with the movement, {len(disagree)} disagree, {len(unverifiable)} not comparable")
        for e in agree[:5]:
            print(f"      agrees: {e[0][0]} track {e[0][1]}: {e[1]}, reported {e[2]}")
        for e in unverifiable[:3]:
            print(f"      not comparable: {e}")
        check(f"(c) line crossings reported within the deadline ({n_cross})", n_cross > 0)
        check(f"(c) every comparable crossing's direction agrees with the movement across x = 0.5 "
              f"({len(agree)} checked)", agree and not disagree, str(disagree[:3]))
        no_cam = [c for c in DEMO_CAMSIM_INDEX if c in by_camera and per_camera[c] == 0]
        if no_cam:
            print(f"    cameras with detections but no crossing yet: {', '.join(no_cam)}")

        # (d) zone presence by the bottom-centre.
        in_road = [d for d in dets if any(z["zone"] == "road" for z in d["zones"])]
        outside = [(d["id"], round(d["box"][3], 3), d["phase"]) for d in in_road if d["box"][3] < ZONE_TOP]
        check(f"(d) zone `road` only for boxes with bottom-centre y >= {ZONE_TOP} ({len(in_road)} records in it)",
              in_road and not outside, str(outside[:5]))

        # (e) snapshot read, logged with its case; refused without a reason.
        snap = next((d for d in dets if d["snapshot_id"]), None)
        if snap:
            jpg = os.path.join(work, "snapshot.jpg")
            reason, case = "e2e detection check", "BG-E2E-DET-1"
            p = run(kordon, ["detections", "snapshot", snap["snapshot_id"], "-o", jpg, "--reason", reason,
                             "--case", case, *server], env)
            check("(e) detections snapshot -o writes a file, exit 0", p.returncode == 0 and os.path.exists(jpg),
                  p.stderr[-400:])
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
                                    "-of", "json", jpg], capture_output=True, text=True, timeout=60)
            s = (json.loads(probe.stdout or "{}").get("streams") or [{}])[0]
            m = re.search(r"rtsp=(\S+)", open(log_path).read())
            rtsp = m.group(1) if m else "127.0.0.1:8554"
            idx = DEMO_CAMSIM_INDEX.get(snap["camera"], 1)
            sp = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                                 "stream=width,height", "-of", "json", f"rtsp://{rtsp}/cam{idx}/sub"],
                                capture_output=True, text=True, timeout=60)
            sub = (json.loads(sp.stdout or "{}").get("streams") or [{}])[0]
            check(f"(e) ffprobe reads the snapshot as JPEG at the detect stream's size "
                  f"({s.get('width')}x{s.get('height')} vs {sub.get('width')}x{sub.get('height')})",
                  s.get("codec_name") == "mjpeg" and s.get("width") and
                  (s.get("width"), s.get("height")) == (sub.get("width"), sub.get("height")),
                  f"{s} {sub} {probe.stderr[-200:]} {sp.stderr[-200:]}")
            site = snap["camera"].split("/")[0]
            p = run(kordon, ["audit", "list", "--site", site, "--for-case", case, "--reason", "e2e audit",
                             "--output", "json", *server], env)
            entries = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else []
            read = [e for e in entries if e.get("action") == "read" and e.get("case_id") == case
                    and e.get("reason") == reason and any(snap["camera"] in o for o in e.get("objects", []))]
            check("(e) audit list shows the snapshot read with its reason and case", bool(read),
                  f"{entries} {p.stderr[-300:]}")
            refused = os.path.join(work, "refused.jpg")
            p = run(kordon, ["detections", "snapshot", snap["snapshot_id"], "-o", refused, *server], env)
            check("(e) snapshot without --reason is refused", p.returncode != 0 and "--reason" in p.stderr
                  and not os.path.exists(refused), p.stderr[-300:])
            p = run(kordon, ["detections", "snapshot", snap["snapshot_id"], "-o", refused, "--reason", " ", *server], env)
            check("(e) snapshot with a blank --reason is refused", p.returncode != 0 and not os.path.exists(refused),
                  p.stderr[-300:])
        else:
            check("(e) a detection carries a snapshot id", False)

        # (f) watch --since replays what list returned, each id once.
        got, p = list_all()
        start = time.time()
        # Detections the replay must contain: those well inside its 2-minute window (10 s of
        # slack for the CLI's own start); N adds a few live ones past the replay's end.
        window = [d for d in got or [] if ts(d["time"]) > start - 110]
        older = [d for d in got or [] if start - 130 < ts(d["time"]) <= start - 110]
        n = len(window) + len(older) + 3
        try:
            p = run(kordon, ["detections", "watch", "--since", "2m", "--count", str(n), "--output", "json", *server],
                    env, 180)
            lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
            rc = p.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            lines = [json.loads(l) for l in out.splitlines() if l.strip()]
            rc = "timeout"
        watched = [d["id"] for d in lines]
        missing = [d["id"] for d in window if d["id"] not in set(watched)]
        print(f"    watch --since 2m --count {n}: {len(watched)} printed, {len(window)} stored in the window")
        check(f"(f) watch --since 2m replays the {len(window)} stored detections `list` returned",
              rc == 0 and window and not missing, f"(rc {rc}; {len(missing)} missing, e.g. {missing[:3]})")
        check("(f) watch never prints one id twice", len(watched) == len(set(watched)) and watched,
              f"({len(watched) - len(set(watched))} repeated)")
        listed = {d["id"]: d for d in got or []}
        # The segment may be linked between the list and the replay (g); the rest is equal.
        bare = lambda d: {k: v for k, v in d.items() if k != "segment_sequence"}  # noqa: E731
        differ = [w["id"] for w in lines if w["id"] in listed and bare(w) != bare(listed[w["id"]])]
        check("(f) replayed detections equal the listed ones", not differ, str(differ[:3]))

        # (g) stored detections name the recorded segment their frame lies in.
        linked, until = [], time.time() + 120
        while time.time() < until:
            got, p = list_all()
            linked = [d for d in got or [] if d.get("segment_sequence")]
            if linked:
                break
            time.sleep(5)
        check("(g) stored detections are linked to their recorded segments within 120 s", bool(linked),
              f"({len(got or [])} stored, none linked)")
        if linked:
            # Everything from the first linked detection to a minute ago is linked (recording
            # is continuous here; a detection before the first segment has none).
            first = min(ts(d["time"]) for d in linked)
            settled = [d for d in got if first <= ts(d["time"]) < time.time() - 60]
            unlinked = [d["id"] for d in settled if not d.get("segment_sequence")]
            print(f"    {len(linked)} of {len(got)} detections linked; {len(settled) - len(unlinked)} of the "
                  f"{len(settled)} between the first link and a minute ago")
            # Each sampled link is the segment whose range holds the detection's time, as
            # `kordon footage get --dir` (the footage read, with a reason) lists the segments.
            cam = collections.Counter(d["camera"] for d in linked).most_common(1)[0][0]
            sample = [d for d in linked if d["camera"] == cam][-6:]
            lo, hi = min(ts(d["time"]) for d in sample), max(ts(d["time"]) for d in sample)
            iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
            seg_dir = os.path.join(work, "segments")
            p = run(kordon, ["footage", "get", "--camera", cam, "--from", iso(lo - 1), "--to", iso(hi + 1),
                             "--dir", seg_dir, "--reason", "e2e: detection segment links", *server], env, 180)
            index = []
            if p.returncode == 0:
                with open(os.path.join(seg_dir, "index.json")) as f:
                    doc = json.load(f)
                index = doc if isinstance(doc, list) else doc.get("segments", [])
            ranges = {e["sequence"]: (ts(e["from"]), ts(e["to"])) for e in index}
            wrong = [(d["id"], d["time"], d["segment_sequence"]) for d in sample
                     if not (d["segment_sequence"] in ranges
                             and ranges[d["segment_sequence"]][0] <= ts(d["time"]) < ranges[d["segment_sequence"]][1])]
            check(f"(g) {len(sample)} sampled links of {cam} name the segment holding the detection's time "
                  f"(kordon footage get --dir: {len(index)} segments)",
                  p.returncode == 0 and not wrong, f"(rc {p.returncode}: {p.stderr[-300:]}; wrong {wrong[:3]})")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        check("standalone exits 0 on SIGTERM", proc.returncode == 0,
              f"(rc {proc.returncode})\n{open(log_path).read()[-1500:]}")
        if failed():
            print(f"    work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        print(summary())
        sys.exit(1 if failed() else 0)


if __name__ == "__main__":
    main()
