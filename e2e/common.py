"""Helpers shared by the end-to-end checks and benchmarks in e2e/.

Each script runs as `python e2e/X.py ...`, so this directory is first on sys.path and
`import common` finds this module. Nothing here starts a process by itself.

  - check(name, cond, detail) counts and prints one check (`  ok   name` / `  FAIL name detail`);
    `passed()`/`failed()` and `summary()` give the counts and the closing `e2e: N passed, M failed`
    line that scripts/test.sh adds up.
  - free_ports, wait_port: loopback ports for the processes a script starts.
  - run: one `kordon` CLI call, output captured as text.
  - cpu_seconds, stop: /proc CPU time of a process; SIGTERM, then SIGKILL after a grace period.
  - Client: a gRPC client whose message types come from the server's reflection service
    (grpcio is imported only when one is made, so benchmarks run without it).
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

_counts = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        _counts["passed"] += 1
        print(f"  ok   {name}")
    else:
        _counts["failed"] += 1
        print(f"  FAIL {name} {detail}")


def passed():
    return _counts["passed"]


def failed():
    return _counts["failed"]


def summary(prefix="e2e"):
    """The closing line; scripts/test.sh sums the `e2e: ` lines."""
    return f"{prefix}: {passed()} passed, {failed()} failed"


def version():
    """The workspace's version (Cargo.toml's [workspace.package]): the image's tag."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    text = open(os.path.join(root, "Cargo.toml")).read()
    return re.search(r'\[workspace\.package\][^\[]*?\nversion = "([^"]+)"', text).group(1)


def free_ports(n):
    """n distinct free loopback ports (all held open while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port, timeout=60):
    """Returns once something accepts on 127.0.0.1:port; exits the script after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listening on {port} after {timeout}s")


def run(kordon, args, env, timeout=120):
    """`kordon ARGS...`, stdout and stderr captured as text."""
    return subprocess.run([kordon, *args], env=env, capture_output=True, text=True, timeout=timeout)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        # fields 14,15 (utime, stime) are rest[11], rest[12]
        return (int(rest[11]) + int(rest[12])) / TICK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def memory_kib(pid):
    """(PSS, peak RSS) of a process in KiB, (0, 0) once it is gone. PSS divides shared pages
    (libraries, the binary) among the processes that map them, so summing it over many
    processes does not count a library once per process as RSS would."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        with open(f"/proc/{pid}/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return pss, hwm
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0, 0


def stop(procs, timeout=30):
    """SIGTERM to every process still running, then wait; SIGKILL whatever outlives `timeout`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()


class Client:
    """A gRPC client whose message types come from the server's reflection service."""

    def __init__(self, target):
        import grpc
        from google.protobuf import descriptor_pool
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase,
        )

        self.channel = grpc.insecure_channel(target)
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))

    def call(self, service, method, body):
        from google.protobuf import json_format, message_factory

        m = self.pool.FindServiceByName(service).FindMethodByName(method)
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        stub = self.channel.unary_unary(f"/{service}/{method}", request_serializer=req_cls.SerializeToString,
                                        response_deserializer=resp_cls.FromString)
        req = json_format.ParseDict(body, req_cls())
        return json_format.MessageToDict(stub(req, timeout=30), preserving_proto_field_name=True)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_jwt(key, issuer, audience, sub, roles, exp_in=3600, name=None):
    """An EdDSA JWT as Kordon's verifier reads it (roles per site in `kordon_roles`), signed
    with `openssl pkeyutl` and the Ed25519 private key file `key`."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    claims = {"iss": issuer, "aud": audience, "sub": sub, "name": name or sub, "iat": now, "exp": now + exp_in,
              "kordon_roles": roles}
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
    with tempfile.NamedTemporaryFile() as f:
        f.write(signing_input.encode())
        f.flush()
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", f.name],
                             check=True, capture_output=True).stdout
    return f"{signing_input}.{b64url(sig)}"
