#!/usr/bin/env python3
"""End-to-end smoke test of every `kordon` server subcommand, from a client that is not Kordon's.

For each of ingest, transcode, detection, storage, alerting and standalone it starts the real
binary on free loopback ports and checks, with Python grpcio:
  - gRPC health answers SERVING for the service (and overall);
  - reflection lists the service, and only what the process serves;
  - a call without credentials is refused with UNAUTHENTICATED (standalone on loopback: the
    development identity answers instead);
  - the admin port serves /live, /ready and /metrics;
  - SIGTERM drains and exits 0.
Also: a bad configuration value exits 2 and names the key.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from common import check, failed, free_ports, summary

SERVICES = {
    "ingest": ["kordon.ingest.v1.IngestService"],
    "transcode": ["kordon.transcode.v1.TranscodeService"],
    "detection": ["kordon.detection.v1.DetectionService"],
    "storage": ["kordon.storage.v1.StorageService"],
    "alerting": ["kordon.alerting.v1.AlertingService"],
}
SERVICES["standalone"] = [s for v in SERVICES.values() for s in v]
COMMON = ["kordon.common.v1.IdentityService", "grpc.health.v1.Health"]


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def list_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    for resp in stub.ServerReflectionInfo(iter([req]), timeout=5):
        return [s.name for s in resp.list_services_response.service]
    return []


def who_am_i(channel):
    call = channel.unary_unary(
        "/kordon.common.v1.IdentityService/WhoAmI",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    return call(b"", timeout=5)


def run_one(kordon, sub, env):
    print(f"kordon {sub}")
    env = dict(env)
    if sub in ("ingest", "detection", "transcode"):
        # Ingest, detection and transcode need to know where storage is; they connect lazily,
        # so nothing need listen.
        env[f"KORDON_{sub.upper()}__STORAGE__URL"] = "http://127.0.0.1:9"
    if sub == "alerting":
        # Alerting reads the site's detection replicas; it reconnects on its own, so nothing
        # need listen.
        env["KORDON_ALERTING__DETECTION__ENDPOINTS"] = "[http://127.0.0.1:9]"
    grpc_port, admin_port, http_port = free_ports(3)
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [kordon, sub,
             "--grpc-listen", f"127.0.0.1:{grpc_port}",
             "--admin-listen", f"127.0.0.1:{admin_port}",
             "--http-listen", f"127.0.0.1:{http_port}",
             "--data-dir", data],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            health = health_pb2_grpc.HealthStub(channel)
            status = None
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                    break
                except grpc.RpcError:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.2)
            if status is None:
                proc.kill()
                out, _ = proc.communicate()
                check(f"{sub}: starts and answers health", False, f"\n{out}")
                return
            check(f"{sub}: health overall SERVING", status == health_pb2.HealthCheckResponse.SERVING,
                  f"(got {status})")
            for svc in SERVICES[sub]:
                st = health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5).status
                check(f"{sub}: health {svc} SERVING", st == health_pb2.HealthCheckResponse.SERVING)

            names = list_services(channel)
            for svc in SERVICES[sub] + COMMON:
                check(f"{sub}: reflection lists {svc}", svc in names, f"(got {names})")
            others = [n for n in names if n.startswith("kordon.") and n not in SERVICES[sub] + COMMON]
            check(f"{sub}: reflection lists nothing else", not others, f"(extra {others})")

            try:
                who_am_i(channel)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            expected = grpc.StatusCode.OK if sub == "standalone" else grpc.StatusCode.UNAUTHENTICATED
            check(f"{sub}: WhoAmI without credentials -> {expected.name}", code == expected, f"(got {code})")

            if sub == "standalone":
                server = ["--server", f"http://127.0.0.1:{grpc_port}"]
                p = subprocess.run([kordon, "footage", "list", "--site", "burgas", "--since", "1h",
                                    "--reason", "e2e smoke", "--output", "json", *server],
                                   env=env, capture_output=True, text=True, timeout=30)
                try:
                    listed = json.loads(p.stdout)
                except ValueError:
                    listed = None
                check(f"{sub}: kordon footage list --output json answers a list", p.returncode == 0 and isinstance(listed, list),
                      p.stderr[-300:])
                p = subprocess.run([kordon, "footage", "list", "--site", "burgas", "--since", "1h", *server],
                                   env=env, capture_output=True, text=True, timeout=30)
                check(f"{sub}: footage list without --reason is refused", p.returncode != 0 and "--reason" in p.stderr,
                      p.stderr[-300:])

            st, _ = http_get(f"http://127.0.0.1:{admin_port}/live")
            check(f"{sub}: /live 200", st == 200)
            st, _ = http_get(f"http://127.0.0.1:{admin_port}/ready")
            check(f"{sub}: /ready 200", st == 200, f"(got {st})")
            st, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
            check(f"{sub}: /metrics has gRPC request counts",
                  st == 200 and "kordon_grpc_server_requests_total" in body)
            channel.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        check(f"{sub}: SIGTERM drains and exits 0", proc.returncode == 0, f"(rc {proc.returncode})\n{out}")
        if sub == "standalone":
            check(f"{sub}: warns loudly about the development identity", "DEVELOPMENT IDENTITY ENABLED" in out)


def bad_config(kordon, env):
    print("bad configuration")
    e = dict(env, KORDON_GRPC_LISTEN="not-an-address")
    p = subprocess.run([kordon, "storage"], env=e, capture_output=True, text=True, timeout=30)
    check("bad KORDON_GRPC_LISTEN exits 2", p.returncode == 2, f"(rc {p.returncode})")
    check("and names the key", "`grpc_listen`" in p.stderr, p.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("auth:\n  jwt:\n    issuer: x\n    audience: y\n    keys: []\n")
    p = subprocess.run([kordon, "storage", "--config", f.name], env=env, capture_output=True, text=True, timeout=30)
    os.unlink(f.name)
    check("empty auth.jwt.keys exits 2 naming the key", p.returncode == 2 and "`auth.jwt.keys`" in p.stderr, p.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    env["KORDON_LOG"] = "info"
    for sub in SERVICES:
        run_one(args.kordon, sub, env)
    bad_config(args.kordon, env)
    print(summary())
    sys.exit(1 if failed() else 0)


if __name__ == "__main__":
    main()
