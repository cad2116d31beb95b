#!/usr/bin/env python3
"""The auditor's path through the `kordon` CLI, end to end, against `kordon standalone`.

Starts standalone (simulated cameras, local files, SQLite) in a temporary data directory, waits
until burgas/port-gate has recorded a few segments, then:
  - `kordon footage get` writes one MP4 that ffprobe (not Kordon) decodes, and a directory of
    segments with an index;
  - `kordon evidence export` builds, downloads and verifies a signed bundle of two cameras;
  - `kordon evidence verify` passes on it with the site key pinned, and fails — exit 1, naming
    the file or the manifest — after one flipped byte in a segment, one deleted segment, or an
    edited manifest, and with another site's key;
  - `kordon audit list` shows the export and downloads with case, reason and recipient, and
    `kordon audit verify` reports the access log intact with a signed checkpoint.
Prints `e2e: N passed, M failed` and exits non-zero on any failure.
"""

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

from common import check, failed, free_ports, run, summary


def rewrite_tar(src, dst, edit):
    """Copies tar `src` to `dst`, passing each member's (name, bytes) through `edit`, which
    returns new bytes or None to drop the member."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else b""
            new = edit(m.name, data)
            if new is None:
                continue
            info = tarfile.TarInfo(m.name)
            info.size = len(new)
            info.mode = m.mode
            info.mtime = m.mtime
            tout.addfile(info, io.BytesIO(new))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--record-seconds", type=int, default=20)
    args = ap.parse_args()
    kordon = os.path.abspath(args.kordon)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    env["KORDON_LOG"] = "warn"
    work = tempfile.mkdtemp(prefix="kordon-evidence-")
    grpc_port, admin_port, http_port = free_ports(3)
    server = ["--server", f"http://127.0.0.1:{grpc_port}"]
    print(f"evidence path via the CLI (standalone in {work})")
    proc = subprocess.Popen(
        [kordon, "standalone", "--data-dir", os.path.join(work, "data"),
         "--grpc-listen", f"127.0.0.1:{grpc_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
         "--http-listen", f"127.0.0.1:{http_port}"],
        env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        # Wait until port-gate has recorded enough.
        deadline = time.time() + args.record_seconds + 90
        recorded = 0
        while time.time() < deadline:
            time.sleep(3)
            if proc.poll() is not None:
                break
            p = run(kordon, ["footage", "list", "--camera", "burgas/port-gate", "--since", "1h",
                             "--reason", "e2e evidence", "--output", "json", *server], env, 30)
            if p.returncode == 0:
                ranges = json.loads(p.stdout)
                recorded = sum(r["segments"] for r in ranges if r["kind"] == "recorded")
                if recorded >= 3:
                    break
        check("standalone records burgas/port-gate (>= 3 segments)", recorded >= 3, f"(got {recorded})")
        if recorded < 3:
            return

        # footage get: one file, and a directory.
        mp4 = os.path.join(work, "port-gate.mp4")
        p = run(kordon, ["footage", "get", "--camera", "burgas/port-gate", "--since", "10m",
                         "--reason", "e2e footage get", "--case", "BG-E2E-1", "-o", mp4, *server], env)
        check("kordon footage get -o FILE exits 0", p.returncode == 0, p.stderr[-500:])
        if p.returncode == 0:
            probe = subprocess.run(
                ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                 "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", mp4],
                capture_output=True, text=True, timeout=120)
            s = json.loads(probe.stdout or "{}").get("streams", [{}])[0]
            frames = int(s.get("nb_read_frames", 0))
            check("ffprobe decodes the joined MP4 (h264 1920x1080, >= 3 segments of frames)",
                  s.get("codec_name") == "h264" and s.get("width") == 1920 and frames >= 3 * 6 * 25 - 25,
                  f"({s})")
        seg_dir = os.path.join(work, "segments")
        p = run(kordon, ["footage", "get", "--camera", "burgas/port-gate", "--since", "10m",
                         "--reason", "e2e footage get", "--dir", seg_dir, *server], env)
        index = json.load(open(os.path.join(seg_dir, "index.json"))) if p.returncode == 0 else {}
        check("kordon footage get --dir writes segments and index.json",
              p.returncode == 0 and len(index.get("segments", [])) >= 3
              and all(os.path.exists(os.path.join(seg_dir, s["file"])) for s in index["segments"]),
              p.stderr[-500:])

        # evidence export → download → verify.
        bundle = os.path.join(work, "bundle.tar")
        p = run(kordon, ["evidence", "export", "--camera", "burgas/port-gate", "--camera", "burgas/pier-2",
                         "--since", "10m", "--case", "BG-2026-0142", "--reason", "smuggling investigation",
                         "--recipient", "Burgas District Prosecutor", "-o", bundle, *server], env, 300)
        check("kordon evidence export builds, downloads and verifies a bundle",
              p.returncode == 0 and "verified: signature, files and chain intact" in p.stderr,
              p.stderr[-800:])
        if p.returncode != 0:
            return
        key = next((l.split()[-1] for l in p.stderr.splitlines() if l.startswith("site signing key")), "")
        check("export prints the site's signing key", len(key) == 64, p.stderr[-300:])
        p = run(kordon, ["evidence", "verify", bundle, "--public-key", key], env)
        check("kordon evidence verify --public-key: intact, exit 0",
              p.returncode == 0 and "RESULT     intact" in p.stdout, p.stdout[-500:] + p.stderr[-300:])
        p = run(kordon, ["evidence", "verify", bundle, "--public-key", key, "--output", "json"], env)
        rep = json.loads(p.stdout) if p.stdout else {}
        check("verify --output json reports cameras, segments and the verdict",
              p.returncode == 0 and rep.get("cameras") == 2 and rep.get("segments_checked", 0) >= 3
              and rep.get("verdict") == "intact", str(rep)[:300])
        # Without a trusted key the signer is unknown: never "intact", exit 3.
        p = run(kordon, ["evidence", "verify", bundle], env)
        check("verify without a key: UNKNOWN SIGNER, exit 3",
              p.returncode == 3 and "UNKNOWN SIGNER" in p.stdout and "RESULT     intact" not in p.stdout,
              f"rc {p.returncode}\n" + p.stdout[-500:] + p.stderr[-300:])
        trusted = os.path.join(work, "trusted-keys")
        with open(trusted, "w") as f:
            f.write(f"# partner sites\n{'22' * 32} edirne\n{key} burgas\n")
        p = run(kordon, ["evidence", "verify", bundle, "--trusted-keys", trusted], env)
        check("verify --trusted-keys: intact, names the signing site",
              p.returncode == 0 and "trusted: burgas" in p.stdout, p.stdout[-500:] + p.stderr[-300:])

        with tarfile.open(bundle) as t:
            names = [m.name for m in t.getmembers()]
        segs = [n for n in names if n.startswith("segments/burgas/") or n.startswith("segments/port-gate/")]
        victim = segs[0]

        flipped = os.path.join(work, "flipped.tar")
        def flip(name, data):
            if name == victim:
                b = bytearray(data)
                b[len(b) // 2] ^= 1
                return bytes(b)
            return data
        rewrite_tar(bundle, flipped, flip)
        p = run(kordon, ["evidence", "verify", flipped, "--public-key", key], env)
        check("one flipped byte: verify exits 1 and names the altered file",
              p.returncode == 1 and f"`{victim}` was altered" in p.stdout, p.stdout[-600:])

        deleted = os.path.join(work, "deleted.tar")
        rewrite_tar(bundle, deleted, lambda n, d: None if n == victim else d)
        p = run(kordon, ["evidence", "verify", deleted, "--public-key", key], env)
        check("one deleted segment: verify exits 1 and names the missing file",
              p.returncode == 1 and f"`{victim}` is missing from the bundle" in p.stdout, p.stdout[-600:])

        edited = os.path.join(work, "edited.tar")
        rewrite_tar(bundle, edited,
                    lambda n, d: d.replace(b"BG-2026-0142", b"BG-2026-9999") if n == "manifest.json" else d)
        p = run(kordon, ["evidence", "verify", edited, "--public-key", key], env)
        check("edited manifest: verify exits 1 (changed after signing, signature invalid)",
              p.returncode == 1 and "changed after signing" in p.stdout and "INVALID" in p.stdout,
              p.stdout[-600:])

        p = run(kordon, ["evidence", "verify", bundle, "--public-key", "11" * 32], env)
        check("another site's key: verify exits 1", p.returncode == 1 and "not the expected site key" in p.stdout,
              p.stdout[-400:])

        # The access log shows it all and verifies.
        p = run(kordon, ["audit", "list", "--site", "burgas", "--for-case", "BG-2026-0142",
                         "--reason", "e2e audit", "--output", "json", *server], env)
        entries = json.loads(p.stdout) if p.returncode == 0 else []
        actions = [e["action"] for e in entries]
        export = next((e for e in entries if e["action"] == "export"), {})
        check("kordon audit list shows the export and the download",
              "export" in actions and "download" in actions, f"{actions} {p.stderr[-300:]}")
        check("the export entry names case, reason and recipient",
              export.get("reason") == "smuggling investigation"
              and export.get("recipient") == "Burgas District Prosecutor", str(export)[:400])
        p = run(kordon, ["audit", "list", "--site", "burgas", *server], env)
        check("audit list without --reason is refused", p.returncode != 0 and "--reason" in p.stderr, p.stderr[-300:])
        p = run(kordon, ["audit", "verify", "--site", "burgas", "--output", "json", *server], env)
        v = json.loads(p.stdout) if p.returncode == 0 else {}
        check("kordon audit verify: access log intact with a signed checkpoint",
              v.get("intact") is True and len(v.get("head", {}).get("signature", "")) == 128,
              p.stdout[-400:] + p.stderr[-300:])
        cp = os.path.join(work, "checkpoint.json")
        with open(cp, "w") as f:
            json.dump(v, f)
        p = run(kordon, ["audit", "verify", "--site", "burgas", "--checkpoint", cp, *server], env)
        check("audit verify --checkpoint accepts an earlier checkpoint", p.returncode == 0, p.stdout[-400:] + p.stderr[-300:])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        check("standalone exits 0 on SIGTERM", proc.returncode == 0, f"(rc {proc.returncode})\n{out[-1500:]}")
        shutil.rmtree(work, ignore_errors=True)
        print(summary())
        sys.exit(1 if failed() else 0)


if __name__ == "__main__":
    main()
