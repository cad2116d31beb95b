"""Running a command from an unpacked OCI image the way a container runtime runs a pod's
container, without one: `scripts/image.sh unpack` gives the bundle (rootfs/ and config.json),
and `start` runs a command in it with a private mount namespace (and UTS namespace: the pod's
host name), optionally inside a network namespace made by the caller:

  - the root filesystem bind-mounted read-only (readOnlyRootFilesystem), proc, /dev, a tmpfs /tmp;
  - each volume bind-mounted at its path (read-only where asked), mount points made inside the
    root filesystem first as runc makes them, with the image's own symlinks followed inside it;
  - chroot, then the image's own `setpriv` to the image's user (or the one given) with no
    capabilities left and no new privileges, and `env -i` with the image's environment plus the
    container's.

Every step execs, so the returned Popen's pid is the command's own (signals reach it directly).
Needs root. Used by image_check.py (the image alone) and kubelet.py (the operator's pods).
"""

import json
import os
import shlex
import subprocess


def image_config(archive):
    """The image's own config (Entrypoint, Cmd, User, Env, Labels, ...) and its reference, read
    from an OCI archive (the runtime's config.json merges Entrypoint and Cmd)."""
    import tarfile
    with tarfile.open(archive) as tar:
        read = lambda name: json.load(tar.extractfile(name))
        blob = lambda d: read("blobs/" + d["digest"].replace(":", "/", 1))
        entry = read("index.json")["manifests"][0]
        manifest = blob(entry)
        image = blob(manifest["config"])
    return {"ref": (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name"),
            "layers": len(manifest["layers"]), "config": image.get("config") or {}}


def config(bundle):
    """The runtime config (`config.json`) of an unpacked bundle: process, user, env, cwd."""
    return json.load(open(os.path.join(bundle, "config.json")))


def image_env(bundle):
    """The image's environment as a dict."""
    return dict(e.split("=", 1) for e in config(bundle)["process"]["env"])


def secure_join(rootfs, path):
    """`path` inside `rootfs`, with symlinks in the image resolved inside it (an absolute link
    such as /var/run -> /run points into the image, never at the host's directory)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(rootfs, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise ValueError(f"too many symlinks resolving {path} in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(rootfs, *resolved)


def start(bundle, args, mounts=(), env=None, user=None, hostname=None, netns=None,
          stdout=None, stderr=None, tmp_size="256m"):
    """Starts `args` in the image. `mounts` are (host path, container path, read_only); a host
    file is mounted on a file, a directory on a directory. `env` is added to (and overrides)
    the image's. `user` is "uid:gid" (default: the image's). `netns` names a network namespace
    under /run/netns. Returns the Popen."""
    cfg = config(bundle)
    proc = cfg["process"]
    if user is None:
        user = f"{proc['user']['uid']}:{proc['user']['gid']}"
    merged = image_env(bundle)
    merged.update(env or {})
    rootfs = os.path.join(bundle, "rootfs")
    q = shlex.quote
    lines = ["set -e", f"R={q(rootfs)}"]
    # Mount points first, while the root filesystem can still be written (as runc does).
    targets = []
    for src, dst, ro in mounts:
        target = secure_join(rootfs, dst)
        if os.path.isdir(src):
            lines.append(f"mkdir -p {q(target)}")
        else:
            lines.append(f"mkdir -p {q(os.path.dirname(target))}; [ -e {q(target)} ] || : > {q(target)}")
        targets.append((src, target, ro))
    lines += [
        'mount --bind "$R" "$R"',
        'mount -o remount,bind,ro "$R"',
        'mount -t proc proc "$R/proc"',
        'mount --rbind /dev "$R/dev"',
        f'mount -t tmpfs -o mode=1777,size={tmp_size} tmpfs "$R/tmp"',
    ]
    for src, target, ro in targets:
        lines.append(f"mount --bind {q(src)} {q(target)}")
        if ro:
            lines.append(f"mount -o remount,bind,ro {q(target)}")
    if hostname:
        lines.append(f"hostname {q(hostname)}")
    uid, gid = user.split(":")
    # chroot needs CAP_SYS_CHROOT, so it comes first; the image's own setpriv (util-linux is in
    # every Debian base) then drops to the user with no capabilities left.
    command = [
        "chroot", rootfs, "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
        "/usr/bin/env", "-i", f"--chdir={proc.get('cwd', '/')}",
        *[f"{k}={v}" for k, v in merged.items()], *args,
    ]
    lines.append("exec " + " ".join(q(c) for c in command))
    prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
    unshare = ["unshare", "--mount", "--propagation", "private"] + (["--uts"] if hostname else [])
    return subprocess.Popen([*prefix, *unshare, "sh", "-c", "\n".join(lines)],
                            stdout=stdout, stderr=stderr, text=True)


def run(bundle, args, mounts=(), timeout=120, **kw):
    """`start`, waited for: (returncode, stdout, stderr)."""
    p = start(bundle, args, mounts, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return p.returncode, out, err
