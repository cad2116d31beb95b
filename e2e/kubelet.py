"""A small kubelet for the end-to-end suite: it runs, from the Kordon image's root filesystem,
the pods of the StatefulSets and Deployments on a real kube-apiserver (the one scripts/kube.sh
starts, which has no kubelet, scheduler or controller-manager).

What a node would do, as far as Kordon's workloads need it:

  - Pods. Each StatefulSet's `replicas` pods `<set>-<ordinal>` and each Deployment's pods
    `<deployment>-<template hash>-<i>`, each a process started by `oci.start` as its container
    runs: the template's args after the image's entrypoint (or its command), its env
    (values, fieldRef: metadata.name/namespace/labels['…'], status.podIP; secretKeyRef,
    configMapKeyRef), its user (securityContext), a read-only root, no capabilities.
  - Volumes. configMap and secret (items, defaultMode, group fsGroup), projected ones of them, persistentVolumeClaim and
    the StatefulSets' volumeClaimTemplates (a directory per claim, kept across pods, like a
    volume that outlives them), emptyDir (a directory per pod), and the service account's token
    (TokenRequest), CA and namespace at /var/run/secrets/kubernetes.io/serviceaccount.
  - Network. A network namespace per pod with its own address on a bridge (10.244.0.0/24 by
    default), so every pod listens on the same ports as in a cluster. The API server's in-cluster
    address (10.0.0.1:443, in its certificate) and the host's test services are forwarded to
    127.0.0.1. Name resolution is a hosts file every pod mounts at /etc/hosts: each Service's
    `<svc>.<ns>.svc` (its ready pods; every pod when publishNotReadyAddresses) and each
    StatefulSet pod's `<pod>.<svc>.<ns>.svc`.
  - Lifecycle. A container that exits is restarted (restartPolicy Always, back-off 0, 10, 20 …
    300 s); replicas changes start or stop pods (SIGTERM, then SIGKILL after the template's
    terminationGracePeriodSeconds); a changed template replaces the pods (StatefulSet: one at a
    time, each ready before the next; Deployment: Recreate stops the old pods first,
    RollingUpdate starts the new ones and stops the old once the new are ready). Readiness is the
    template's readinessProbe (httpGet) asked every 2 s.
  - Images. A pod whose image is not the one unpacked is not started (as ErrImagePull would).

Not done (nothing of Kordon needs it): scheduling, resource limits, liveness restarts, init
containers, more than one container, envFrom, Pod objects in the API (`pods()` lists them here).
"""

import base64
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import oci

IN_CLUSTER_API = ("10.0.0.1", 443)


class Api:
    """The few REST calls the kubelet makes, with the admin kubeconfig's client certificate."""

    def __init__(self, kubeconfig):
        env = dict(os.environ, KUBECONFIG=kubeconfig)
        cfg = json.loads(subprocess.run(["kubectl", "config", "view", "--raw", "--minify", "-o", "json"],
                                        env=env, check=True, capture_output=True, text=True).stdout)
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.server = cluster["server"].rstrip("/")
        self._dir = tempfile.mkdtemp(prefix="kordon-kubelet-api-")
        self.ca_file = self._file(cluster, "certificate-authority", "ca.crt")
        self.ca_pem = open(self.ca_file).read()
        self.ctx = ssl.create_default_context(cafile=self.ca_file)
        self.ctx.load_cert_chain(self._file(user, "client-certificate", "tls.crt"),
                                 self._file(user, "client-key", "tls.key"))

    def _file(self, section, key, name):
        if section.get(key):
            return section[key]
        path = os.path.join(self._dir, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(section[f"{key}-data"]))
        os.chmod(path, 0o600)
        return path

    def request(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except json.JSONDecodeError:
                return e.code, None

    def get(self, path):
        """The object at `path`, or None when there is none."""
        code, body = self.request("GET", path)
        if code == 404:
            return None
        if code != 200:
            raise RuntimeError(f"GET {path}: HTTP {code}: {(body or {}).get('message')}")
        return body

    def items(self, path):
        return (self.get(path) or {}).get("items", [])

    def token(self, ns, service_account, seconds=3600):
        """A bound token of the service account (TokenRequest), or None when it does not exist."""
        code, body = self.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{service_account}/token",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                   "spec": {"expirationSeconds": seconds}})
        if code == 404:
            return None
        if code not in (200, 201):
            raise RuntimeError(f"TokenRequest {ns}/{service_account}: HTTP {code}: {(body or {}).get('message')}")
        return body["status"]["token"]


class Network:
    """A bridge with the pods' subnet, a network namespace (and veth) per pod, and the API
    server's in-cluster address on the host side."""

    def __init__(self, bridge="kordon0", subnet="10.244.0.0/24"):
        self.bridge = bridge
        self.net = ipaddress.ip_network(subnet)
        hosts = self.net.hosts()
        self.gateway = str(next(hosts))
        self.free = [str(h) for h in hosts]
        self.used = {}
        self.lock = threading.Lock()
        self.serial = 0

    def _ip(self, *args, check=True):
        p = subprocess.run(["ip", *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")
        return p

    def _sweep(self):
        """Namespaces and pairs of this bridge that are left (a killed run, a failed attach)."""
        for line in self._ip("netns", "list").stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(f"{self.bridge}-p"):
                self._ip("netns", "del", name, check=False)
        for line in self._ip("-o", "link", "show", "type", "veth").stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(f"{self.bridge[:6]}h"):
                self._ip("link", "del", name, check=False)

    def up(self):
        self._sweep()
        self._ip("link", "del", self.bridge, check=False)
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._ip("addr", "add", f"{self.gateway}/{self.net.prefixlen}", "dev", self.bridge)
        self._ip("addr", "add", f"{IN_CLUSTER_API[0]}/32", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")

    def attach(self):
        """A new network namespace with an address on the bridge: (namespace name, address)."""
        with self.lock:
            if not self.free:
                raise RuntimeError(f"no address left in {self.net}")
            addr = self.free.pop(0)
            self.serial += 1
            n = self.serial
        ns = f"{self.bridge}-p{n}"
        host_if, pod_if = f"{self.bridge[:6]}h{n}", f"{self.bridge[:6]}c{n}"
        # A pair of that name left by an earlier run (its namespace outlived it for a moment).
        self._ip("link", "del", host_if, check=False)
        try:
            self._ip("netns", "add", ns)
            self._ip("link", "add", host_if, "type", "veth", "peer", "name", pod_if)
            self._ip("link", "set", host_if, "master", self.bridge, "up")
            self._ip("link", "set", pod_if, "netns", ns)
            self._ip("-n", ns, "link", "set", pod_if, "name", "eth0")
            self._ip("-n", ns, "addr", "add", f"{addr}/{self.net.prefixlen}", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "route", "add", "default", "via", self.gateway)
        except RuntimeError:
            self._ip("netns", "del", ns, check=False)
            self._ip("link", "del", host_if, check=False)
            with self.lock:
                self.free.append(addr)
            raise
        with self.lock:
            self.used[ns] = addr
        return ns, addr

    def detach(self, ns):
        self._ip("netns", "del", ns, check=False)  # takes its end of the veth pair with it
        with self.lock:
            addr = self.used.pop(ns, None)
            if addr:
                self.free.append(addr)

    def down(self):
        for ns in list(self.used):
            self.detach(ns)
        self._sweep()
        self._ip("link", "del", self.bridge, check=False)


class Forwarder:
    """TCP forwarding, each (listen address, port) to (address, port), in a thread of its own:
    how the pods reach the API server and the host's test services on 127.0.0.1."""

    def __init__(self):
        import asyncio
        self.asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="forwarder")
        self.thread.start()
        self.servers = []

    def add(self, listen, to):
        asyncio = self.asyncio

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                try:
                    writer.close()
                except OSError:
                    pass

        async def handle(reader, writer):
            try:
                r2, w2 = await asyncio.open_connection(*to)
                await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
            except OSError:
                writer.close()
            except asyncio.CancelledError:
                # close(): the connection ends with the forwarder (asyncio's callback would
                # otherwise report the cancellation as an error).
                writer.close()

        async def serve():
            return await asyncio.start_server(handle, *listen)

        self.servers.append(asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10))

    def close(self):
        asyncio = self.asyncio

        async def shutdown():
            for s in self.servers:
                s.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def template_hash(template):
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def tail_lines(path, n):
    """The last `n` lines of a file, indented (what a pod said before it was killed)."""
    try:
        with open(path, errors="replace") as f:
            return "".join("      " + line for line in f.readlines()[-n:])
    except OSError as e:
        return f"      ({e})\n"


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Pod:
    def __init__(self, ns, name, kind, owner, template, hash_, ordinal=None, claims=()):
        self.ns, self.name, self.kind, self.owner = ns, name, kind, owner
        self.template, self.hash, self.ordinal = template, hash_, ordinal
        self.claims = list(claims)  # StatefulSet volumeClaimTemplates
        labels = dict(template.get("metadata", {}).get("labels") or {})
        if ordinal is not None:
            labels["statefulset.kubernetes.io/pod-name"] = name
            labels["apps.kubernetes.io/pod-index"] = str(ordinal)
        self.labels = labels
        self.netns = self.ip = None
        self.proc = None
        self.restarts = 0
        self.started = 0.0
        self.next_start = 0.0
        self.ready = False
        self.terminating = False

    @property
    def key(self):
        return (self.ns, self.name)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def spec(self):
        return self.template.get("spec", {})

    def container(self):
        return self.spec()["containers"][0]


class Kubelet:
    """Runs the pods of every StatefulSet and Deployment in `namespaces` from `bundle` (an
    unpacked image; `image_config` is `oci.image_config` of its archive), until `stop()`. `forwards` are extra
    (listen address, port) -> (address, port) forwards for host services. `aliases` are names outside
    the cluster (a load balancer's DNS name) -> (namespace, Service): they resolve to that Service's
    pods as its own name does."""

    def __init__(self, api, bundle, image_config, work, namespaces, network=None, forwards=(), log=print,
                 sync_every=1.0, aliases=None):
        self.api, self.bundle, self.work = api, bundle, work
        self.image = image_config["ref"]
        # Kubernetes' rules: `command` replaces the image's Entrypoint, `args` its Cmd.
        self.entrypoint = image_config["config"].get("Entrypoint") or []
        self.cmd = image_config["config"].get("Cmd") or []
        self.image_user = oci.config(bundle)["process"]["user"]
        self.namespaces = sorted(namespaces)
        self.network = network or Network()
        self.log = log
        self.sync_every = sync_every
        self.pods = {}
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.hosts_path = os.path.join(work, "hosts")
        self.aliases = {}
        for host, (ns, svc) in (aliases or {}).items():
            self.aliases.setdefault((ns, svc), []).append(host)
        self.hosts_text = None
        os.makedirs(os.path.join(work, "logs"), exist_ok=True)
        os.makedirs(os.path.join(work, "claims"), exist_ok=True)
        self.network.up()
        self.forwarder = Forwarder()
        self.forwarder.add(IN_CLUSTER_API, self._api_address())
        for listen, to in forwards:
            self.forwarder.add(listen, to)
        self._write_hosts([])
        self.thread = threading.Thread(target=self._run, daemon=True, name="kubelet")
        self.last_probe = 0.0
        self.last_error = None

    def _api_address(self):
        hostport = self.api.server.split("://", 1)[1]
        host, port = hostport.rsplit(":", 1)
        return host, int(port)

    def start(self):
        self.thread.start()
        return self

    # -- what the tests ask ------------------------------------------------------------------

    def pod_list(self):
        """[(namespace, name, ip, running, ready, restarts)] of every pod."""
        with self.lock:
            return sorted((p.ns, p.name, p.ip, p.running, p.ready, p.restarts) for p in self.pods.values())

    def get(self, ns, name):
        with self.lock:
            return self.pods.get((ns, name))

    def kill(self, ns, name, sig=signal.SIGKILL):
        """Signals the pod's container (the restart policy then restarts it)."""
        pod = self.get(ns, name)
        if pod is None or not pod.running:
            raise RuntimeError(f"no running pod {ns}/{name}")
        os.kill(pod.proc.pid, sig)
        return pod.proc.pid

    def log_path(self, ns, name):
        return os.path.join(self.work, "logs", f"{ns}.{name}.log")

    def stop(self):
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(30)
        with self.lock:
            pods = list(self.pods.values())
        # A pod already stopping gets no second SIGTERM (Kordon reads a second signal as "exit
        # now, without draining"): it is waited for, as a kubelet waits out the grace period.
        threads = [threading.Thread(target=self._terminate, args=(p, False, not p.terminating)) for p in pods]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.forwarder.close()
        self.network.down()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self):
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as e:  # the API server restarting must not end the kubelet
                msg = f"kubelet: sync failed: {e}"
                if msg != self.last_error:
                    self.log(msg)
                self.last_error = msg
            self.stopping.wait(self.sync_every)

    def sync(self):
        sets, deployments, services = [], [], []
        for ns in self.namespaces:
            sets += self.api.items(f"/apis/apps/v1/namespaces/{ns}/statefulsets")
            deployments += self.api.items(f"/apis/apps/v1/namespaces/{ns}/deployments")
            services += self.api.items(f"/api/v1/namespaces/{ns}/services")
        now = time.time()
        with self.lock:
            wanted = set()
            for s in sets:
                self._sync_set(s, wanted)
            for d in deployments:
                self._sync_deployment(d, wanted)
            for key, pod in list(self.pods.items()):
                if key not in wanted and not pod.terminating:
                    self._stop_async(pod, "no longer wanted")
            for pod in list(self.pods.values()):
                self._keep_running(pod, now)
        if now - self.last_probe >= 2:
            self.last_probe = now
            self._probe()
        self._write_hosts(services)

    def _sync_set(self, s, wanted):
        ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
        spec = s["spec"]
        template = spec["template"]
        h = template_hash(template)
        replicas = spec.get("replicas", 1)
        claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []]
        pods = []
        for i in range(replicas):
            pod_name = f"{name}-{i}"
            wanted.add((ns, pod_name))
            pod = self.pods.get((ns, pod_name))
            if pod is None:
                pod = self.pods[(ns, pod_name)] = Pod(ns, pod_name, "StatefulSet", name, template, h, i, claims)
            pods.append(pod)
        # A changed template: one pod at a time, highest ordinal first, once the pods already
        # replaced are ready (a rolling update).
        stale = [p for p in pods if p.hash != h]
        if stale and not any(p.terminating for p in pods) and all(p.ready for p in pods if p.hash == h):
            self._stop_async(stale[-1], "its StatefulSet's template changed")

    def _sync_deployment(self, d, wanted):
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        spec = d["spec"]
        template = spec["template"]
        h = template_hash(template)
        replicas = spec.get("replicas", 1)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        old = [p for p in self.pods.values()
               if p.kind == "Deployment" and p.ns == ns and p.owner == name and p.hash != h]
        new_names = [f"{name}-{h}-{i}" for i in range(replicas)]
        if recreate and old:
            # The old pods stop first; they stay wanted until gone, and nothing new starts yet.
            for p in old:
                if not p.terminating:
                    self._stop_async(p, "its Deployment's template changed (Recreate)")
                wanted.add(p.key)
            return
        for pod_name in new_names:
            wanted.add((ns, pod_name))
            if (ns, pod_name) not in self.pods:
                self.pods[(ns, pod_name)] = Pod(ns, pod_name, "Deployment", name, template, h)
        news = [self.pods[(ns, n)] for n in new_names]
        # RollingUpdate: the old pods go once the new ones are ready (or have had 2 minutes).
        settled = all(p.ready or (p.started and time.time() - p.started > 120) for p in news)
        if not settled:
            for p in old:
                wanted.add(p.key)

    def _keep_running(self, pod, now):
        if pod.terminating or pod.running:
            return
        if pod.proc is not None:
            code = pod.proc.returncode
            pod.proc = None
            pod.ready = False
            pod.restarts += 1
            ran = now - pod.started
            delay = 0 if pod.restarts == 1 or ran > 600 else min(10 * 2 ** (pod.restarts - 2), 300)
            pod.next_start = now + delay
            self.log(f"kubelet: {pod.ns}/{pod.name} exited with {code} after {ran:.0f} s; "
                     f"restart {pod.restarts} in {delay} s")
        if now < pod.next_start:
            return
        # A StatefulSet's pod starts only once its predecessor of the same name has stopped.
        try:
            self._start(pod)
        except Exception as e:
            pod.next_start = now + 5
            self.log(f"kubelet: {pod.ns}/{pod.name} not started: {e}")

    # -- one pod --------------------------------------------------------------------------------

    def _start(self, pod):
        c = pod.container()
        if c.get("image") != self.image:
            raise RuntimeError(f"ErrImagePull: image {c.get('image')!r} is not the one here ({self.image!r})")
        if pod.netns is None:
            pod.netns, pod.ip = self.network.attach()
        spec = pod.spec()
        psc = spec.get("securityContext") or {}
        csc = c.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        uid = self.image_user["uid"] if uid is None else uid
        gid = self.image_user["gid"] if gid is None else gid
        fs_group = psc.get("fsGroup")
        if (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")) and uid == 0:
            raise RuntimeError("CreateContainerConfigError: runAsNonRoot and the image runs as root")
        mounts = self._volumes(pod, uid, fs_group)
        mounts.append((self.hosts_path, "/etc/hosts", True))
        env = {"HOSTNAME": pod.name, "KUBERNETES_SERVICE_HOST": IN_CLUSTER_API[0],
               "KUBERNETES_SERVICE_PORT": str(IN_CLUSTER_API[1])}
        for e in c.get("env") or []:
            env[e["name"]] = self._env_value(pod, e)
        if c.get("command"):
            args = list(c["command"]) + list(c.get("args") or [])
        else:
            args = self.entrypoint + list(c["args"] if "args" in c else self.cmd)
        log = open(self.log_path(pod.ns, pod.name), "a")
        log.write(f"---- {time.strftime('%H:%M:%S')} start {pod.restarts} ----\n")
        log.flush()
        pod.proc = oci.start(self.bundle, args, mounts, env=env, user=f"{uid}:{gid}", hostname=pod.name,
                             netns=pod.netns, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        pod.started = time.time()
        self.log(f"kubelet: started {pod.ns}/{pod.name} ({pod.ip}, pid {pod.proc.pid}): {' '.join(args)}")

    def _env_value(self, pod, e):
        if "value" in e:
            return e["value"]
        src = e.get("valueFrom") or {}
        if "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            if path == "metadata.name":
                return pod.name
            if path == "metadata.namespace":
                return pod.ns
            if path == "status.podIP":
                return pod.ip
            if path.startswith("metadata.labels['") and path.endswith("']"):
                return pod.labels.get(path[len("metadata.labels['"):-2], "")
            raise RuntimeError(f"fieldRef {path} is not supported here")
        for kind, plural, decode in (("secretKeyRef", "secrets", True), ("configMapKeyRef", "configmaps", False)):
            if kind in src:
                ref = src[kind]
                obj = self.api.get(f"/api/v1/namespaces/{pod.ns}/{plural}/{ref['name']}")
                data = (obj or {}).get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return ""
                    raise RuntimeError(f"CreateContainerConfigError: {plural[:-1]} {ref['name']!r} "
                                       f"has no key {ref['key']!r}" if obj else
                                       f"CreateContainerConfigError: {plural[:-1]} {ref['name']!r} not found")
                v = data[ref["key"]]
                return base64.b64decode(v).decode() if decode else v
        raise RuntimeError(f"env {e['name']}: unsupported source {sorted(src)}")

    def _pod_dir(self, pod):
        return os.path.join(self.work, "pods", pod.ns, pod.name)

    def _claim_dir(self, ns, claim, uid, fs_group):
        d = os.path.join(self.work, "claims", ns, claim)
        if not os.path.isdir(d):
            os.makedirs(d)
            os.chown(d, uid, fs_group if fs_group is not None else uid)
            os.chmod(d, 0o2770 if fs_group is not None else 0o700)
        return d

    def _write_files(self, d, files, mode, fs_group):
        """A configMap's or secret's files, fresh at each start (the processes read them then)."""
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        os.chmod(d, 0o755)
        for path, data in files:
            full = os.path.join(d, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
            os.chown(full, 0, fs_group if fs_group is not None else 0)
            os.chmod(full, mode)

    def _source_files(self, ns, secret, ref):
        """(path, bytes) of a configMap's or secret's keys (all, or its `items`), as a volume
        or a projected volume's source shows them; the pod waits while one is missing."""
        obj_name = ref["secretName"] if secret and "secretName" in ref else ref["name"]
        obj = self.api.get(f"/api/v1/namespaces/{ns}/{'secrets' if secret else 'configmaps'}/{obj_name}")
        if obj is None:
            if ref.get("optional"):
                obj = {}
            else:
                raise RuntimeError(f"ContainerCreating: {'secret' if secret else 'configmap'} "
                                   f"{obj_name!r} not found")
        data = {k: (base64.b64decode(x) if secret else x.encode()) for k, x in (obj.get("data") or {}).items()}
        items = ref.get("items")
        files = ([(i["path"], data[i["key"]]) for i in items if i["key"] in data] if items
                 else sorted(data.items()))
        if items and len(files) < len(items) and not ref.get("optional"):
            missing = [i["key"] for i in items if i["key"] not in data]
            raise RuntimeError(f"ContainerCreating: {obj_name!r} has no key(s) {missing}")
        return files

    def _volumes(self, pod, uid, fs_group):
        spec = pod.spec()
        base = self._pod_dir(pod)
        sources = {}
        for v in spec.get("volumes") or []:
            name = v["name"]
            d = os.path.join(base, "volumes", name)
            if "configMap" in v or "secret" in v:
                secret = "secret" in v
                ref = v["secret"] if secret else v["configMap"]
                self._write_files(d, self._source_files(pod.ns, secret, ref), ref.get("defaultMode", 0o644), fs_group)
                sources[name] = d
            elif "projected" in v:
                # configMap and secret sources in one directory (a serviceAccountToken source
                # is not needed by Kordon's pods).
                files = []
                for src in v["projected"].get("sources") or []:
                    kinds = sorted(set(src) & {"configMap", "secret"})
                    if len(kinds) != 1 or len(src) != 1:
                        raise RuntimeError(f"volume {name}: projected source {sorted(src)} is not supported here")
                    files += self._source_files(pod.ns, kinds[0] == "secret", src[kinds[0]])
                self._write_files(d, files, v["projected"].get("defaultMode", 0o644), fs_group)
                sources[name] = d
            elif "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                if self.api.get(f"/api/v1/namespaces/{pod.ns}/persistentvolumeclaims/{claim}") is None:
                    raise RuntimeError(f"ContainerCreating: persistentvolumeclaim {claim!r} not found")
                sources[name] = self._claim_dir(pod.ns, claim, uid, fs_group)
            elif "emptyDir" in v:
                if os.path.isdir(d) and pod.restarts == 0:
                    shutil.rmtree(d)
                os.makedirs(d, exist_ok=True)
                os.chown(d, uid, fs_group if fs_group is not None else uid)
                os.chmod(d, 0o2777 if fs_group is not None else 0o777)
                sources[name] = d
            else:
                raise RuntimeError(f"volume {name}: kind {sorted(set(v) - {'name'})} is not supported here")
        for claim in pod.claims:
            sources.setdefault(claim, self._claim_dir(pod.ns, f"{claim}-{pod.name}", uid, fs_group))
        mounts = []
        for m in pod.container().get("volumeMounts") or []:
            if m["name"] not in sources:
                raise RuntimeError(f"CreateContainerConfigError: volumeMount {m['name']!r} has no volume")
            src = sources[m["name"]]
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
            mounts.append((src, m["mountPath"], bool(m.get("readOnly"))))
        if spec.get("automountServiceAccountToken", True):
            sa = spec.get("serviceAccountName") or "default"
            token = self.api.token(pod.ns, sa)
            if token is not None:
                d = os.path.join(base, "serviceaccount")
                self._write_files(d, [("token", token.encode()), ("ca.crt", self.api.ca_pem.encode()),
                                      ("namespace", pod.ns.encode())], 0o644, fs_group)
                mounts.append((d, "/var/run/secrets/kubernetes.io/serviceaccount", True))
            elif spec.get("serviceAccountName"):
                raise RuntimeError(f"CreateContainerConfigError: serviceaccount {sa!r} not found")
        return mounts

    def _stop_async(self, pod, why):
        pod.terminating = True
        self.log(f"kubelet: stopping {pod.ns}/{pod.name}: {why}")
        threading.Thread(target=self._terminate, args=(pod, True), daemon=True).start()

    def _terminate(self, pod, forget=False, signal_it=True):
        proc = pod.proc
        if proc is not None and proc.poll() is None:
            if signal_it:
                proc.send_signal(signal.SIGTERM)
            grace = pod.spec().get("terminationGracePeriodSeconds", 30)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.log(f"kubelet: {pod.ns}/{pod.name} outlived its {grace} s grace period: SIGKILL; its log ends:\n"
                         + tail_lines(self.log_path(pod.ns, pod.name), 12))
                proc.kill()
                proc.wait()
        if proc is not None and signal_it:  # (the thread that signalled it says so)
            self.log(f"kubelet: {pod.ns}/{pod.name} stopped (exit {proc.returncode})")
        pod.ready = False
        with self.lock:  # (two threads may stop the same pod: one detaches its network)
            netns, pod.netns, pod.ip = pod.netns, None, None
        if netns:
            self.network.detach(netns)
        if forget:
            with self.lock:
                if self.pods.get(pod.key) is pod:
                    del self.pods[pod.key]

    def _probe(self):
        with self.lock:
            pods = [p for p in self.pods.values() if p.running and not p.terminating]
        for pod in pods:
            c = pod.container()
            get = (c.get("readinessProbe") or {}).get("httpGet")
            if not get:
                pod.ready = True
                continue
            port = get["port"]
            if isinstance(port, str):
                port = next((p["containerPort"] for p in c.get("ports") or [] if p.get("name") == port), None)
            try:
                with urllib.request.urlopen(f"http://{pod.ip}:{port}{get.get('path', '/')}", timeout=0.5) as r:
                    pod.ready = 200 <= r.status < 400
            except (OSError, urllib.error.URLError):
                pod.ready = False

    # -- names ------------------------------------------------------------------------------------

    def _write_hosts(self, services):
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{IN_CLUSTER_API[0]}\tkubernetes kubernetes.default kubernetes.default.svc "
                 "kubernetes.default.svc.cluster.local"]
        with self.lock:
            pods = [p for p in self.pods.values() if p.running and p.ip]
        for p in sorted(pods, key=lambda p: p.ip):
            lines.append(f"{p.ip}\t{p.name}")
        for s in services:
            ns, name = s["metadata"]["namespace"], s["metadata"]["name"]
            spec = s.get("spec") or {}
            selector = spec.get("selector") or {}
            all_pods = spec.get("publishNotReadyAddresses", False)
            fqdn = f"{name}.{ns}.svc"
            for p in sorted(pods, key=lambda p: p.name):
                if p.ns != ns or not matches(selector, p.labels) or p.terminating:
                    continue
                names = []
                if all_pods or p.ready:
                    names += [fqdn, f"{fqdn}.cluster.local", *sorted(self.aliases.get((ns, name), []))]
                if spec.get("clusterIP") == "None" and p.kind == "StatefulSet":
                    names += [f"{p.name}.{fqdn}", f"{p.name}.{fqdn}.cluster.local"]
                if names:
                    lines.append(f"{p.ip}\t{' '.join(names)}")
        text = "\n".join(lines) + "\n"
        if text == self.hosts_text:
            return
        # Rewritten in place: every pod has this very file (inode) bind-mounted.
        mode = "r+" if os.path.exists(self.hosts_path) else "w"
        with open(self.hosts_path, mode) as f:
            f.seek(0)
            f.write(text)
            f.truncate()
        os.chmod(self.hosts_path, 0o644)
        self.hosts_text = text
