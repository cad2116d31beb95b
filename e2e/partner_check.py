"""End-to-end check of cross-border cooperation: two Kordon installations on 127.0.0.1.

Burgas (Bulgaria) and Edirne (Türkiye) each run `kordon standalone` with their own CA, their own
partner-link certificate and their own Ed25519 evidence key; they share nothing but what their
`partners:` sections declare. Burgas records the demo cameras (the real street clip) and raises
alerts with two rules: `person-on-the-road` at port-gate, which the agreement covers, and
`pier-watch` at pier-2, which it does not. Checks:

  (a) with different terms declared on each side, both sides show the agreement as a mismatch,
      with the differing term named, and nothing reaches Edirne;
  (b) a partner declared with the wrong CA (yambol, whose endpoint is really Edirne's link) is
      unreachable, and its status says the certificate is not signed by the declared CA; a
      caller presenting a certificate of an undeclared CA gets nothing from Burgas's link;
  (c) with matching terms (Edirne restarted), both sides show accepted, with equal digests;
  (d) a covered alert arrives at Edirne with its origin and only the allowed fields (no
      snapshot, no rule id); an alert of pier-2 never does;
  (e) an acknowledgement at Edirne shows at Burgas, attributed to edirne/<officer>;
  (f) both access logs hold the exchange: Burgas an alert-forward entry with recipient edirne,
      Edirne an alert-receive entry with source burgas; both chains verify;
  (g) footage: Edirne requests port-gate footage with case, legal basis and reason; Burgas
      approves a narrower range; Edirne fetches the bundle, verified with Burgas's pinned key;
      a refused and an expired grant each give a clear error; both access logs hold the
      request, decision and download.

Run: python e2e/partner_check.py --kordon target/debug/kordon
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import check, failed, free_ports, run, stop, summary, wait_port

sys.path.insert(0, os.path.dirname(__file__))
from detection_check import ort_env  # noqa: E402


def sh(*args, **kw):
    subprocess.run(list(args), check=True, capture_output=True, **kw)


def make_ca(work, name):
    key, crt = os.path.join(work, f"{name}-ca.key"), os.path.join(work, f"{name}-ca.crt")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={name} Kordon CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


def make_link_cert(work, site, ca):
    """The site's partner-link certificate: server and client, IP SAN 127.0.0.1, Kordon identity."""
    key, csr, crt = (os.path.join(work, f"{site}-link.{x}") for x in ("key", "csr", "crt"))
    ext = os.path.join(work, f"{site}-link.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                f"subjectAltName=IP:127.0.0.1,DNS:localhost,URI:spiffe://kordon.io/ns/e2e/site/{site}/partner-link\n")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
       "-out", csr, "-subj", f"/CN={site} partner link")
    sh("openssl", "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial", "-out", crt,
       "-days", "2", "-extfile", ext)
    return crt, key


def make_evidence_key(work, site):
    """An Ed25519 PKCS#8 key for the site's storage, and its public key as 64 hex digits."""
    path = os.path.join(work, f"{site}-signing.pem")
    sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", path)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return path, der[-32:].hex()


SHARED = {"alerts": True, "min_severity": "high", "cameras": ["port-gate"], "snapshots": False,
          "footage": {"requests": True, "max_range": "10m", "form": "original", "keep_for": "30d"}}
NOTHING = {"alerts": True}


def burgas_config(link, edirne, yambol):
    return {
        "storage": {"signing_key_file": link["signing"]},
        "alerting": {
            "time_zones": {"burgas": "Europe/Sofia"},
            "rules": [
                {"name": "person-on-the-road", "site": "burgas", "severity": "high", "cameras": ["port-gate"],
                 "classes": ["person"], "zone": {"zones": ["road"], "min_dwell": "1s"},
                 "quiet_period": "5s", "cooldown": "1s"},
                {"name": "pier-watch", "site": "burgas", "severity": "critical", "cameras": ["pier-2"],
                 "classes": ["person", "car"], "quiet_period": "5s", "cooldown": "1s"},
            ],
        },
        "partners": {
            "site": "burgas", "listen": f"127.0.0.1:{link['port']}", "cert_file": link["crt"],
            "key_file": link["key"], "exchange_interval": "2s",
            "partners": [
                {"site": "edirne", "display_name": "Edirne İl Emniyet Müdürlüğü",
                 "endpoint": f"https://127.0.0.1:{edirne['port']}", "ca_file": edirne["ca"],
                 "evidence_public_key": edirne["public"], "shares": SHARED, "receives": NOTHING},
                # Declared with the wrong CA: its endpoint is Edirne's link, signed by Edirne's CA.
                {"site": "yambol", "endpoint": f"https://127.0.0.1:{edirne['port']}", "ca_file": yambol["ca"],
                 "evidence_public_key": "00" * 32, "shares": NOTHING, "receives": NOTHING},
            ],
        },
    }


def edirne_config(link, burgas, receives):
    return {
        "storage": {"signing_key_file": link["signing"]},
        "sites": [{"name": "edirne", "time_zone": "Europe/Istanbul", "cameras": []}],
        "partners": {
            "site": "edirne", "listen": f"127.0.0.1:{link['port']}", "cert_file": link["crt"],
            "key_file": link["key"], "exchange_interval": "2s",
            "partners": [
                {"site": "burgas", "display_name": "ОДМВР Бургас", "endpoint": f"https://127.0.0.1:{burgas['port']}",
                 "ca_file": burgas["ca"], "evidence_public_key": burgas["public"],
                 "shares": NOTHING, "receives": receives},
            ],
        },
    }


def write_config(work, site, cfg):
    """The site's config file in `work` (JSON is YAML)."""
    path = os.path.join(work, f"{site}.yaml")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def start_site(kordon, env, work, site, ports, cfg_path):
    """`kordon standalone` for one installation on its ports (grpc, admin, http), logging to
    `work/<site>.log` and keeping its data in `work/<site>-data`."""
    log = open(os.path.join(work, f"{site}.log"), "a")
    return subprocess.Popen(
        [kordon, "standalone", "--config", cfg_path, "--data-dir", os.path.join(work, f"{site}-data"),
         "--grpc-listen", f"127.0.0.1:{ports['grpc']}", "--admin-listen", f"127.0.0.1:{ports['admin']}",
         "--http-listen", f"127.0.0.1:{ports['http']}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)


def print_log_errors(work, sites):
    """The last ERROR or panic lines of each site's log in `work`, if any."""
    for site in sites:
        path = os.path.join(work, f"{site}.log")
        if os.path.exists(path):
            with open(path) as f:
                errors = [line for line in f if " ERROR " in line or "panicked" in line]
            if errors:
                print(f"    {site}.log errors:\n      " + "      ".join(errors[-5:]))


def wait_for(what, cond, deadline, step=2):
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    print(f"    gave up waiting for {what}")
    return None


def cli_json(kordon, args, env):
    r = run(kordon, [*args, "--output", "json"], env)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return None


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--deadline", type=int, default=600, help="seconds to wait for an alert")
    args = ap.parse_args()
    kordon = os.path.abspath(args.kordon)
    env = ort_env({k: v for k, v in os.environ.items() if not k.startswith("KORDON_")})
    env["KORDON_LOG"] = "warn,kordon=info,kordon_alerting=info,kordon_runtime=info"
    work = tempfile.mkdtemp(prefix="kordon-partners-")
    print(f"cross-border cooperation between two installations (in {work})")

    ports = free_ports(8)
    sites = {}
    for i, site in enumerate(("burgas", "edirne")):
        ca = make_ca(work, site)
        crt, key = make_link_cert(work, site, ca)
        signing, public = make_evidence_key(work, site)
        sites[site] = {"ca": ca[1], "ca_pair": ca, "crt": crt, "key": key, "signing": signing, "public": public,
                       "grpc": ports[4 * i], "admin": ports[4 * i + 1], "http": ports[4 * i + 2],
                       "port": ports[4 * i + 3]}
    stranger = make_ca(work, "stranger")
    stranger_crt, stranger_key = make_link_cert(work, "edirne-forged", stranger)
    b, e = sites["burgas"], sites["edirne"]
    server = {s: ["--server", f"http://127.0.0.1:{v['grpc']}"] for s, v in sites.items()}

    def write(site, cfg):
        return write_config(work, site, cfg)

    def start(site, cfg_path):
        return start_site(kordon, env, work, site, sites[site], cfg_path)

    def agreement(site, partner):
        rows = cli_json(kordon, ["partners", "list", *server[site]], env) or []
        return next((r for r in rows if r["partner"] == partner), None)

    def alerts(site):
        return cli_json(kordon, ["alerts", "list", "--limit", "500", *server[site]], env) or []

    procs = []
    burgas = start("burgas", write("burgas", burgas_config(b, e, {"ca": stranger[1]})))
    procs.append(burgas)
    mismatched = dict(SHARED, snapshots=True)
    edirne = start("edirne", write("edirne", edirne_config(e, b, mismatched)))
    procs.append(edirne)
    try:
        wait_port(b["grpc"], 180)
        wait_port(e["grpc"], 180)
        deadline = time.time() + 60

        # (a) different terms: a mismatch on both sides, naming the term.
        mis_b = wait_for("burgas to see the mismatch", lambda: (a := agreement("burgas", "edirne"))
                         and a["state"] == "mismatch" and a, deadline, 1)
        check("(a) Burgas shows the agreement with Edirne as a mismatch",
              mis_b is not None, str(agreement("burgas", "edirne")))
        check("(a) ... and names the differing term (snapshots)",
              bool(mis_b) and "snapshots" in mis_b["state_reason"], (mis_b or {}).get("state_reason", ""))
        mis_e = wait_for("edirne to see the mismatch", lambda: (a := agreement("edirne", "burgas"))
                         and a["state"] == "mismatch" and a, time.time() + 30, 1)
        check("(a) Edirne shows it as a mismatch too", mis_e is not None, str(agreement("edirne", "burgas")))

        # (b) the wrong CA: unreachable, and why; a forged certificate gets nothing.
        y = wait_for("yambol's state", lambda: (a := agreement("burgas", "yambol"))
                     and a["state"] == "unreachable" and a, time.time() + 30, 1)
        check("(b) a partner declared with the wrong CA is unreachable, and its status says why",
              bool(y) and "not signed by the CA declared" in y["state_reason"], str(agreement("burgas", "yambol")))
        forged = probe_link(b["port"], b["ca"], stranger_crt, stranger_key)
        check("(b) a caller whose certificate no declared CA signed gets nothing from the link",
              forged is not None and forged != "OK", str(forged))

        first = wait_for("a person-on-the-road alert at Burgas",
                         lambda: next((a for a in alerts("burgas") if a["rule"] == "person-on-the-road"), None),
                         time.time() + args.deadline, 5)
        check("(a) Burgas raises person-on-the-road alerts", first is not None)
        time.sleep(3)
        check("(a) while the terms differ, nothing reaches Edirne", alerts("edirne") == [],
              str(alerts("edirne")[:2]))

        # (c) matching terms: restart Edirne with what Burgas declared.
        stop([edirne])
        edirne = start("edirne", write("edirne", edirne_config(e, b, SHARED)))
        procs.append(edirne)
        wait_port(e["grpc"], 180)
        acc = wait_for("both sides to accept", lambda: (x := agreement("burgas", "edirne")) and
                       (z := agreement("edirne", "burgas")) and x["state"] == z["state"] == "accepted" and (x, z),
                       time.time() + 60, 1)
        check("(c) with matching terms both sides show the agreement accepted", acc is not None,
              f"{agreement('burgas', 'edirne')} / {agreement('edirne', 'burgas')}")
        if acc:
            x, z = acc
            check("(c) ... with equal agreement digests on both sides",
                  x["terms_digest"] == z["terms_digest"] == x["partner_terms_digest"] == z["partner_terms_digest"],
                  f"{x['terms_digest']} {z['terms_digest']} {x['partner_terms_digest']} {z['partner_terms_digest']}")
            check("(c) ... and a last contact", bool(x["last_contact_at"]) and bool(z["last_contact_at"]))

        # (d) a covered alert arrives with its origin and only the allowed fields.
        got = wait_for("a shared alert at Edirne",
                       lambda: next((a for a in alerts("edirne") if a["rule"] == "person-on-the-road"), None),
                       time.time() + args.deadline, 3)
        check("(d) a person-on-the-road alert of Burgas arrives at Edirne", got is not None)
        if not got:
            return
        aid = got["id"]
        full = cli_json(kordon, ["alerts", "get", aid, *server["edirne"]], env) or {}
        origin = full.get("origin") or {}
        check("(d) ... with its origin site burgas and the origin's id",
              origin.get("site") == "burgas" and origin.get("alert_id") == aid, str(origin))
        check("(d) ... without the snapshot (the agreement shares none) and the rule's internal id",
              not full.get("snapshot_id") and not full.get("rule_id"), json.dumps(full)[:400])
        pier_b = [a for a in alerts("burgas") if a["rule"] == "pier-watch"]
        pier_e = [a for a in alerts("edirne") if a["camera"].endswith("pier-2") or a["rule"] == "pier-watch"]
        check(f"(d) pier-2's alerts ({len(pier_b)} at Burgas) never reach Edirne", pier_e == [], str(pier_e[:2]))

        # (e) joint response: an acknowledgement at Edirne shows at Burgas.
        r = run(kordon, ["alerts", "ack", aid, "--note", "patrol from Edirne on the way", *server["edirne"]], env)
        check("(e) an Edirne officer acknowledges the shared alert", r.returncode == 0, r.stderr[-300:])

        def acked_at_burgas():
            a = cli_json(kordon, ["alerts", "get", aid, *server["burgas"]], env) or {}
            return a if a.get("state") in ("acknowledged", "resolved") else None
        ab = wait_for("the acknowledgement at Burgas", acked_at_burgas, time.time() + 60, 1)
        check("(e) ... and Burgas shows it acknowledged, by edirne/<officer>",
              bool(ab) and ab.get("acknowledged_by", "").startswith("edirne/"), json.dumps(ab)[:300])

        # (f) both access logs.
        def log(site, action):
            return cli_json(kordon, ["audit", "list", "--site", site, "--action", action, "--reason",
                                     "e2e check of partner sharing", *server[site]], env) or []
        fwd = [x for x in log("burgas", "alert-forward") if any(aid in o for o in x["objects"])]
        check("(f) Burgas's access log has the forward, recipient edirne",
              any(x["recipient"] == "edirne" for x in fwd), json.dumps(fwd[:2])[:400])
        rcv = [x for x in log("edirne", "alert-receive") if any(aid in o for o in x["objects"])]
        check("(f) Edirne's access log has the receipt, source burgas",
              any(x["source"] == "burgas" for x in rcv), json.dumps(rcv[:2])[:400])
        for site in ("burgas", "edirne"):
            v = run(kordon, ["audit", "verify", "--site", site, *server[site]], env)
            check(f"(f) {site}'s access log chain verifies", v.returncode == 0, (v.stdout + v.stderr)[-300:])

        footage(kordon, env, server, work, first)
    finally:
        stop(procs)
        print_log_errors(work, ("burgas", "edirne"))
        print(summary())
        if failed():
            print(f"work directory kept: {work}")
            sys.exit(1)
        shutil.rmtree(work, ignore_errors=True)


def footage(kordon, env, server, work, first):
    """(g) a footage request, a narrower approval, a verified download; a refusal and an expiry."""
    now = time.time()
    start, end = now - 90, now - 10

    def request(case):
        r = run(kordon, ["footage", "request", "--partner", "burgas", "--camera", "port-gate",
                         "--from", iso(start), "--to", iso(end), "--case", case,
                         "--legal-basis", "Prüm Decision 2008/615/JHA Art. 12", "--reason",
                         "joint operation at the port gate", "--output", "json", *server["edirne"]], env)
        try:
            return json.loads(r.stdout), r
        except json.JSONDecodeError:
            return None, r

    g, r = request("TR-EDR-2026-0042")
    check("(g) Edirne requests port-gate footage with case, legal basis and reason",
          bool(g) and g.get("state") == "pending", (r.stdout + r.stderr)[-400:])
    if not g:
        return
    gid = g["id"]
    r = run(kordon, ["footage", "approve", gid, "--from", iso(start + 20), "--to", iso(end - 20),
                     "--reason", "covered by the joint operation order", *server["burgas"]], env)
    check("(g) Burgas approves a narrower range", r.returncode == 0, (r.stdout + r.stderr)[-400:])
    out = os.path.join(work, "grant.tar")
    r = run(kordon, ["footage", "fetch", gid, "--partner", "burgas", "--reason", "case file",
                     "--out", out, *server["edirne"]], env, timeout=300)
    check("(g) Edirne fetches the bundle, verified with Burgas's pinned key",
          r.returncode == 0 and os.path.exists(out) and os.path.getsize(out) > 0, (r.stdout + r.stderr)[-400:])

    g2, _ = request("TR-EDR-2026-0043")
    if g2:
        run(kordon, ["footage", "refuse", g2["id"], "--reason", "outside the operation's scope",
                     *server["burgas"]], env)
        r = run(kordon, ["footage", "fetch", g2["id"], "--partner", "burgas", "--reason", "case file",
                         "--out", os.path.join(work, "refused.tar"), *server["edirne"]], env)
        check("(g) a refused grant gives a clear error with the reason",
              r.returncode != 0 and "outside the operation's scope" in r.stderr, r.stderr[-400:])
    g3, _ = request("TR-EDR-2026-0044")
    if g3:
        run(kordon, ["footage", "approve", g3["id"], "--for", "1s", "--reason", "short look",
                     *server["burgas"]], env)
        time.sleep(3)
        r = run(kordon, ["footage", "fetch", g3["id"], "--partner", "burgas", "--reason", "case file",
                         "--out", os.path.join(work, "expired.tar"), *server["edirne"]], env)
        check("(g) an expired grant gives a clear error", r.returncode != 0 and "expired" in r.stderr,
              r.stderr[-400:])

    def actions(site):
        rows = cli_json(kordon, ["audit", "list", "--site", site, "--reason", "e2e check of footage grants",
                                 *server[site]], env) or []
        return [x for x in rows if any(gid in o for o in x["objects"])]
    for site, field, other in (("burgas", "recipient", "edirne"), ("edirne", "source", "burgas")):
        got = {x["action"] for x in actions(site) if x.get(field) == other}
        want = {"footage-request", "footage-decision", "download"}
        check(f"(g) {site}'s access log has the request, decision and download ({field} = {other})",
              want <= got, str(sorted(got)))


def probe_link(port, ca, crt, key):
    """Calls WhoAmI on a partner link with the given client certificate: 'OK' or the error."""
    try:
        import grpc
    except ImportError:
        return None
    with open(ca, "rb") as f:
        root = f.read()
    with open(crt, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        pkey = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=pkey, certificate_chain=chain)
    ch = grpc.secure_channel(f"127.0.0.1:{port}", creds)
    try:
        call = ch.unary_unary("/kordon.common.v1.IdentityService/WhoAmI",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
        call(b"", timeout=10)
        return "OK"
    except grpc.RpcError as err:
        return f"{err.code()}: {err.details()}"
    finally:
        ch.close()


if __name__ == "__main__":
    main()
