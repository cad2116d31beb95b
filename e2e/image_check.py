#!/usr/bin/env python3
"""The Kordon image, as a cluster would pull and run it.

`scripts/image.sh build --profile dev` builds ./Containerfile here (buildah, chroot isolation, a
Debian base from this machine's apt sources, the debug binary the tests compiled) into an OCI
archive; `scripts/image.sh unpack` unpacks it as a container runtime would (a root filesystem
and the runtime config). Then:

  (a) the image's config: entrypoint /usr/bin/kordon, user 65532:65532, the environment that
      finds ONNX Runtime and the prebuilt GStreamer registry, ports 8470-8473, and labels
      naming the project's version and the commit;
  (b) its root filesystem: every library `kordon` and ONNX Runtime link resolves inside it
      (`ldd` run in it), no compiler, no -dev package, no GStreamer tools; its size;
  (c) `kordon standalone` run from it the way the operator's pods run it: read-only root, uid
      65532, no capabilities kept, only /var/lib/kordon and /tmp writable, the image's own
      environment and nothing of the host's. The four demo cameras record (the image's CLI
      lists their footage), the detector runs on ONNX Runtime and stores detections, transcode
      finds its software encoder, GStreamer neither scans nor writes a registry, and SIGTERM
      ends it with exit 0.

Needs root (mount namespace, chroot). Prints `e2e: N passed, M failed`; exits non-zero on any
failure. `--archive FILE` checks an image built earlier instead of building one.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import oci
from common import check, failed, free_ports, stop, summary, version, wait_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
UID = 65532



def in_image(bundle, args, writable, stdout=None, stderr=None, env_extra=None):
    """`args` from the unpacked image as a pod runs its container (oci.start), with `writable`
    at /var/lib/kordon."""
    return oci.start(bundle, args, [(writable, "/var/lib/kordon", False)], env=env_extra,
                     stdout=stdout, stderr=stderr)


def run_in_image(bundle, args, writable, timeout=120):
    return oci.run(bundle, args, [(writable, "/var/lib/kordon", False)], timeout=timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", help="an OCI archive built earlier (default: build one now)")
    ap.add_argument("--profile", default="dev", choices=["dev", "release"])
    ap.add_argument("--out", help="build the archive here and keep it (for cluster_check.py --archive)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("image_check needs root: it unpacks the image and runs it in a mount namespace "
                         "with chroot, as a container runtime does (run it as root or with sudo)")

    work = tempfile.mkdtemp(prefix="kordon-image-")
    print(f"the Kordon image, built and run as a pod would (work dir {work})")
    archive = args.archive
    if not archive:
        archive = os.path.abspath(args.out) if args.out else os.path.join(work, "kordon.oci.tar")
        t0 = time.time()
        p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "image.sh"), "build",
                            "--profile", args.profile, "--out", archive],
                           capture_output=True, text=True)
        check("scripts/image.sh builds the Containerfile into an OCI archive",
              p.returncode == 0 and os.path.isfile(archive), (p.stderr or p.stdout)[-1500:])
        if p.returncode != 0:
            print(summary())
            raise SystemExit(1)
        print(f"    built in {time.time() - t0:.0f} s: {os.path.getsize(archive) / 2**20:.0f} MiB archive")
    bundle = os.path.join(work, "bundle")
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "image.sh"), "unpack", archive, bundle],
                       capture_output=True, text=True)
    check("the archive unpacks as a container runtime would (umoci)", p.returncode == 0, p.stderr[-800:])
    if p.returncode != 0:
        print(summary())
        raise SystemExit(1)
    rootfs = os.path.join(bundle, "rootfs")
    env = oci.image_env(bundle)

    # (a) the image's config, read from the OCI image itself.
    layout = os.path.join(work, "layout")
    os.makedirs(layout)
    subprocess.run(["tar", "-xf", archive, "-C", layout], check=True)
    index = json.load(open(os.path.join(layout, "index.json")))
    blob = lambda d: json.load(open(os.path.join(layout, "blobs", *d["digest"].split(":", 1))))
    manifest = blob(index["manifests"][0])
    image = blob(manifest["config"])
    cfg = image.get("config", {})
    labels = cfg.get("Labels") or {}
    print(f"    ref {index['manifests'][0].get('annotations', {}).get('org.opencontainers.image.ref.name')}, "
          f"{len(manifest['layers'])} layers")
    check("(a) entrypoint /usr/bin/kordon, user 65532:65532",
          cfg.get("Entrypoint") == ["/usr/bin/kordon"] and cfg.get("User") == f"{UID}:{UID}",
          f"{cfg.get('Entrypoint')} {cfg.get('User')}")
    check("(a) the environment finds ONNX Runtime and the prebuilt GStreamer registry (no rescans)",
          env.get("ORT_DYLIB_PATH") == "/usr/lib/kordon/libonnxruntime.so"
          and env.get("GST_REGISTRY") == "/usr/lib/kordon/gstreamer-registry.bin"
          and env.get("GST_REGISTRY_UPDATE") == "no", str(env))
    check("(a) ports 8470-8473 (gRPC, admin, HTTP, partner link) exposed",
          set(cfg.get("ExposedPorts") or {}) == {f"{p}/tcp" for p in range(8470, 8474)}, str(cfg.get("ExposedPorts")))
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    # An image built here names this checkout's commit; one given with --archive, some commit.
    revision = labels.get("org.opencontainers.image.revision", "")
    check("(a) labels name the project's version and the commit",
          labels.get("org.opencontainers.image.version") == version()
          and (revision == head if not args.archive else re.fullmatch(r"[0-9a-f]{40}", revision)), str(labels))

    # (b) the root filesystem.
    data = os.path.join(work, "data")
    os.makedirs(data)
    os.chown(data, UID, UID)
    missing = []
    for lib in ["/usr/bin/kordon", "/usr/lib/kordon/libonnxruntime.so"]:
        rc, out, err = run_in_image(bundle, ["/usr/bin/ldd", lib], data)
        if rc != 0 or "not found" in out:
            missing.append((lib, rc, [l for l in out.splitlines() if "not found" in l] or err[-300:]))
    check("(b) every library kordon and ONNX Runtime link resolves inside the image (ldd in it)", not missing, str(missing))
    unwanted = [p for p in ["usr/bin/gcc", "usr/bin/cc", "usr/bin/cargo", "usr/bin/gst-inspect-1.0",
                            "usr/bin/gst-launch-1.0", "usr/include/gstreamer-1.0"]
                if os.path.lexists(os.path.join(rootfs, p))]
    dpkg = subprocess.run(["dpkg-query", "--admindir", os.path.join(rootfs, "var/lib/dpkg"), "-W", "-f", "${Package}\n"],
                          capture_output=True, text=True).stdout.split()
    dev = [p for p in dpkg if p.endswith("-dev")]
    check("(b) no compiler, no -dev package, no GStreamer tools in it", not unwanted and not dev, f"{unwanted} {dev}")
    size = int(subprocess.run(["du", "-sb", rootfs], capture_output=True, text=True).stdout.split()[0])
    kordon_size = os.path.getsize(os.path.join(rootfs, "usr/bin/kordon"))
    print(f"    root filesystem {size / 2**20:.0f} MiB ({len(dpkg)} Debian packages; kordon {kordon_size / 2**20:.0f} MiB, "
          f"{args.profile if not args.archive else 'given'} build)")
    rc, out, err = run_in_image(bundle, ["/usr/bin/kordon", "--version"], data)
    check(f"(b) `kordon --version` from the image says {version()}", rc == 0 and version() in out, out + err[-300:])

    # (c) standalone, as a pod runs it.
    grpc_port, admin_port, http_port = free_ports(3)
    log_path = os.path.join(work, "standalone.log")
    log = open(log_path, "w")
    server = ["--server", f"http://127.0.0.1:{grpc_port}"]
    p = in_image(bundle, ["/usr/bin/kordon", "standalone", "--data-dir", "/var/lib/kordon",
                          "--grpc-listen", f"127.0.0.1:{grpc_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
                          "--http-listen", f"127.0.0.1:{http_port}"],
                 data, stdout=log, stderr=subprocess.STDOUT, env_extra={"KORDON_LOG": "warn,kordon=info"})
    try:
        wait_port(grpc_port, timeout=180)
        check("(c) standalone starts from the image (read-only root, uid 65532, no capabilities)", p.poll() is None)
        status = open(f"/proc/{p.pid}/status").read()
        uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
        cap_eff = next(l for l in status.splitlines() if l.startswith("CapEff:"))
        check("(c) the process runs as 65532 with no effective capability",
              uid_line.split()[1:] == [str(UID)] * 4 and int(cap_eff.split()[1], 16) == 0, f"{uid_line} {cap_eff}")
        cams = ["burgas/port-gate", "burgas/pier-2", "edirne/kapikule-1", "edirne/kapikule-2"]
        recorded = {}
        deadline = time.time() + 150
        while time.time() < deadline and len(recorded) < len(cams):
            for cam in cams:
                if cam in recorded:
                    continue
                rc, out, err = run_in_image(bundle, ["/usr/bin/kordon", "footage", "list", "--camera", cam, "--since", "10m",
                                                     "--reason", "e2e image check", "--output", "json", *server], data)
                ranges = json.loads(out) if rc == 0 and out.strip() else []
                rec = [r for r in ranges if r.get("kind") == "recorded"]
                if rec:
                    recorded[cam] = rec
            time.sleep(3)
        check("(c) the four demo cameras record (footage listed by the image's own CLI)",
              len(recorded) == len(cams), f"recorded: {sorted(recorded)}")
        dets = []
        deadline = time.time() + 120
        while time.time() < deadline and not dets:
            rc, out, err = run_in_image(bundle, ["/usr/bin/kordon", "detections", "list", "--camera", "burgas/port-gate",
                                                 "--since", "10m", "--output", "json", *server], data)
            try:
                doc = json.loads(out) if rc == 0 and out.strip() else []
            except json.JSONDecodeError:
                doc = []
            dets = doc.get("detections", []) if isinstance(doc, dict) else doc
            if not dets:
                time.sleep(5)
        check("(c) the detector runs in the image and stores detections", bool(dets), (out + err)[-400:])
        rc, out, err = run_in_image(bundle, ["/usr/bin/kordon", "transcode", "status", "--output", "json", *server], data)
        check("(c) transcode finds its software H.264 encoder (x264enc) in the image",
              rc == 0 and "x264enc" in out, (out + err)[-400:])
        print("    " + " ".join(f"{c}: {len(r)} range(s)" for c, r in sorted(recorded.items())))
    finally:
        stop([p], timeout=60)
        code = p.returncode
        log.close()
    check("(c) SIGTERM: standalone from the image exits 0", code == 0, f"rc {code}")
    text = re.sub(r"\x1b\[[0-9;]*m", "", open(log_path).read())
    check("(c) the detector loaded the image's ONNX Runtime (/usr/lib/kordon/libonnxruntime.so)",
          "ONNX Runtime loaded library=/usr/lib/kordon/libonnxruntime.so" in text,
          "\n".join(l for l in text.splitlines() if "ONNX" in l)[-400:])
    check("(c) GStreamer neither scanned nor wrote a registry (no cache under HOME, no registry warning)",
          not os.path.exists(os.path.join(data, ".cache", "gstreamer-1.0")) and "registry" not in text.lower(),
          "\n".join(l for l in text.splitlines() if "registry" in l.lower())[-400:])
    errors = [l for l in text.splitlines() if " ERROR " in l or "CRITICAL" in l or "not found" in l.lower()]
    check("(c) no ERROR, CRITICAL or missing-element line in its log", not errors, "\n".join(errors[:5]))

    print(summary())
    if not args.keep and not failed():
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")
    raise SystemExit(1 if failed() else 0)


if __name__ == "__main__":
    main()
