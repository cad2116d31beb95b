#!/usr/bin/env python3
"""The console's Partners page (#/partners) in a real browser, between two installations.

Burgas (Bulgaria) and Edirne (Türkiye) each run `kordon standalone` with their own CA, partner-link
certificate and Ed25519 evidence key, set up as e2e/partner_check.py does (its helpers are reused);
Burgas records the demo cameras. Debian's Chromium, driven by Selenium through Debian's
chromedriver (headless, 1366x768), then:

  (a) both sides accept the agreement (CLI), and each console signs in as the development identity;
  (b) Edirne's officer requests footage of burgas/port-gate from Edirne's console (partner,
      camera, range in Burgas's zone, reason, case, legal basis): a pending outgoing row;
  (c) Burgas's console shows it incoming with who asked, the camera, the reason and the case, and
      approves it with a note; the row turns approved, and the CLI reads the note as the decision;
  (d) Edirne's console shows it approved and downloads it (FetchFootageGrant streamed into a
      Blob); the file's SHA-256 is the grant's, and `kordon evidence verify` verifies it with
      Burgas's evidence key;
  (e) a second request, refused from Burgas's console with a note, shows refused (denied) with
      the note on Edirne's side, without a download button;
  (f) Edirne's access log holds the console's request and download with their reason and case;
  (g) the page in Bulgarian and Turkish; every form control on it has an accessible name.

    source scripts/lib.sh
    "$KORDON_VENV/bin/python" e2e/console_partners_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" \
        [--screenshots docs/console] [--vite | --console-url burgas=URL --console-url edirne=URL \
         --http-port burgas=PORT --http-port edirne=PORT]

By default each console is the binary's own (embedded from console/dist at its build time), on
the installation's HTTP listener. To test a console built since, `--vite` serves console/dist with
`vite preview` (one per installation, proxying the API to it as console/vite.config.ts does with
KORDON_HTTP); or give each site's console URL with --console-url, and pin the HTTP listeners that
those servers forward to with --http-port. Prints `e2e: N passed, M failed`; screenshots
partners-in.png (Burgas) and partners-out.png (Edirne) go to --screenshots (default: the work
directory, kept when a check fails).
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import check, failed, free_ports, run, stop, summary, wait_port  # noqa: E402
from partner_check import (  # noqa: E402
    burgas_config, cli_json, edirne_config, make_ca, make_evidence_key, make_link_cert, start_site, wait_for,
    print_log_errors, write_config, SHARED,
)
from console_check import browser, close_browser, page, set_value, shot, unnamed_controls, wait  # noqa: E402

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

REASON = "joint operation at the port gate"
CASE = "TR-EDR-2026-0142"
CASE2 = "TR-EDR-2026-0143"
LEGAL = "Prüm Decision 2008/615/JHA Art. 12"
APPROVE_NOTE = "covered by the joint operation order"
REFUSE_NOTE = "outside the operation's scope"
CONSOLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "console")


def pairs(values, what):
    out = {}
    for v in values or []:
        site, _, rest = v.partition("=")
        if site not in ("burgas", "edirne") or not rest:
            raise SystemExit(f"{what} {v!r}: expected burgas=... or edirne=...")
        out[site] = rest
    return out


def start_preview(site, http_port, port, work):
    """`vite preview` of console/dist on `port`, forwarding the API to kordon's HTTP listener."""
    vite = os.path.join(CONSOLE_DIR, "node_modules", ".bin", "vite")
    env = dict(os.environ, KORDON_HTTP=f"http://127.0.0.1:{http_port}")
    log = open(os.path.join(work, f"vite-{site}.log"), "w")
    return subprocess.Popen([vite, "preview", "--host", "127.0.0.1", "--port", str(port), "--strictPort"],
                            cwd=CONSOLE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


def sign_in(driver, base):
    driver.get(base + "/#/signin")
    dev = wait("the development identity button", lambda: driver.find_element(By.ID, "signin-dev").is_displayed()
               and driver.find_element(By.ID, "signin-dev"), 60)
    if not dev:
        return False
    dev.click()
    return bool(wait("the principal in the header", lambda: driver.find_element(By.ID, "whoami").text.strip()
                     not in ("", "…", "?"), 30))


def open_partners(driver, base):
    driver.get(base + "/#/cameras")
    time.sleep(0.3)
    link = wait("the Partners link", lambda: driver.find_element(By.ID, "nav-partners"), 30)
    if link:
        link.click()
    else:
        driver.get(base + "/#/partners")
    return page(driver, "partners", 60)


def row(driver, gid, direction):
    els = driver.find_elements(By.CSS_SELECTOR, f'.grant-row[data-id="{gid}"][data-direction="{direction}"]')
    return els[0] if els else None


def row_state(driver, gid, direction):
    r = row(driver, gid, direction)
    return r.get_attribute("data-state") if r else None


def wait_state(driver, gid, direction, state, timeout):
    """Waits for the row's state; the page re-reads its lists every 10 s, and Refresh is pressed too."""
    deadline = time.time() + timeout
    last_refresh = time.time()
    while time.time() < deadline:
        try:
            if row_state(driver, gid, direction) == state:
                return True
            if time.time() - last_refresh > 5:
                driver.find_element(By.ID, "grants-refresh").click()
                last_refresh = time.time()
        except WebDriverException:
            pass
        time.sleep(0.5)
    print(f"  (waited {timeout}s for grant {gid} ({direction}) to be {state}; it is {row_state(driver, gid, direction)})")
    return False


def fill_request(driver, case):
    """The request form: Burgas's port-gate over [now-80 s, now-20 s], written in the zone the page
    reads the inputs in (Burgas's, as the page says: data-zone)."""
    Select(driver.find_element(By.ID, "request-site")).select_by_value("burgas")
    zone = driver.find_element(By.ID, "request-from").get_attribute("data-zone") or "UTC"
    now = driver.execute_script("return Date.now()") / 1000.0
    fmt = lambda t: driver.execute_script("""
      const f = new Intl.DateTimeFormat('sv-SE', {timeZone: arguments[1], year: 'numeric', month: '2-digit',
        day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'});
      return f.format(new Date(arguments[0] * 1000)).replace(' ', 'T');""", t, zone)
    set_value(driver, driver.find_element(By.ID, "request-from"), fmt(now - 80))
    set_value(driver, driver.find_element(By.ID, "request-to"), fmt(now - 20))
    for field, value in (("request-camera", "port-gate"), ("request-reason", REASON), ("request-case", case),
                         ("request-legal-basis", LEGAL)):
        el = driver.find_element(By.ID, field)
        el.clear()
        el.send_keys(value)


def submit_request(driver, case):
    """Submits the form; returns the new outgoing row's grant id (or None) and the form's error."""
    before = {r.get_attribute("data-id") for r in driver.find_elements(By.CSS_SELECTOR, '.grant-row[data-direction="out"]')}
    fill_request(driver, case)
    driver.find_element(By.ID, "request-submit").click()
    def outcome():
        new = [r.get_attribute("data-id") for r in driver.find_elements(By.CSS_SELECTOR, '.grant-row[data-direction="out"]')
               if r.get_attribute("data-id") not in before]
        if new:
            return ("id", new[0])
        err = driver.find_element(By.ID, "request-error").text.strip()
        return ("error", err) if err else None
    got = wait("the new outgoing request", outcome, 90)
    gid = got[1] if got and got[0] == "id" else None
    return gid, driver.find_element(By.ID, "request-error").text


def decide(driver, gid, note, button):
    sel = f'.grant-row[data-id="{gid}"][data-direction="in"]'
    ok = wait("the note typed", lambda: driver.find_element(By.CSS_SELECTOR, f"{sel} .grant-note").send_keys(note) or True, 15)
    ok = ok and wait(f"the {button} click", lambda: driver.find_element(By.CSS_SELECTOR, f"{sel} .{button}").click() or True, 15)
    return bool(ok)


def answer_reason_dialog(driver):
    """Fills the reason dialog if the page asked (the request form normally set the reason)."""
    try:
        if driver.find_element(By.ID, "reason-dialog").is_displayed():
            driver.find_element(By.ID, "reason-input").send_keys(REASON)
            driver.find_element(By.ID, "case-input").send_keys(CASE)
            driver.find_element(By.ID, "reason-submit").click()
    except WebDriverException:
        pass


def blob_bytes(driver, href):
    """The bytes behind a blob: URL of the page, read in the page (base64 over WebDriver)."""
    driver.set_script_timeout(120)
    b64 = driver.execute_async_script("""
      const [href, done] = arguments;
      fetch(href).then(r => r.blob()).then(b => new Promise((ok, bad) => {
        const fr = new FileReader(); fr.onload = () => ok(fr.result); fr.onerror = bad; fr.readAsDataURL(b);
      })).then(u => done(String(u).split(',', 2)[1] || ''), e => done('ERR ' + e));""", href)
    if b64.startswith("ERR "):
        raise RuntimeError(b64)
    return base64.b64decode(b64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--screenshots", help="directory for partners-in.png and partners-out.png (default: the work directory)")
    ap.add_argument("--console-url", action="append", metavar="SITE=URL",
                    help="the console of burgas or edirne at URL (default: the installation's HTTP listener)")
    ap.add_argument("--http-port", action="append", metavar="SITE=PORT",
                    help="the HTTP listener port of burgas or edirne (what a --console-url server forwards to)")
    ap.add_argument("--vite", action="store_true",
                    help="serve console/dist with `vite preview` per installation (build it first: npm run build)")
    ap.add_argument("--footage-wait", type=int, default=100, help="seconds Burgas records before the first request")
    args = ap.parse_args()
    kordon = os.path.abspath(args.kordon)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORDON_")}
    env["KORDON_LOG"] = "warn,kordon=info,kordon_storage=info,kordon_runtime=info"
    work = tempfile.mkdtemp(prefix="kordon-console-partners-")
    shots = os.path.abspath(args.screenshots) if args.screenshots else work
    os.makedirs(shots, exist_ok=True)
    downloads = os.path.join(work, "downloads")
    os.makedirs(downloads)
    urls = pairs(args.console_url, "--console-url")
    pinned = {s: int(p) for s, p in pairs(args.http_port, "--http-port").items()}
    print(f"the console's Partners page between Burgas and Edirne (in {work})")

    ports = free_ports(10)
    sites = {}
    for i, site in enumerate(("burgas", "edirne")):
        ca = make_ca(work, site)
        crt, key = make_link_cert(work, site, ca)
        signing, public = make_evidence_key(work, site)
        sites[site] = {"ca": ca[1], "crt": crt, "key": key, "signing": signing, "public": public,
                       "grpc": ports[4 * i], "admin": ports[4 * i + 1], "http": pinned.get(site, ports[4 * i + 2]),
                       "port": ports[4 * i + 3], "preview": ports[8 + i]}
    b, e = sites["burgas"], sites["edirne"]
    server = {s: ["--server", f"http://127.0.0.1:{v['grpc']}"] for s, v in sites.items()}

    def write(site, cfg):
        return write_config(work, site, cfg)

    def start(site, cfg_path):
        return start_site(kordon, env, work, site, sites[site], cfg_path)

    # Burgas shares port-gate's footage on request with Edirne, which expects exactly that.
    bcfg = burgas_config(b, e, {"ca": b["ca"]})
    bcfg["partners"]["partners"] = [p for p in bcfg["partners"]["partners"] if p["site"] == "edirne"]
    procs = [start("burgas", write("burgas", bcfg)), start("edirne", write("edirne", edirne_config(e, b, SHARED)))]
    started = time.time()
    base = {}
    for site, v in sites.items():
        if site in urls:
            base[site] = urls[site].rstrip("/")
        elif args.vite:
            procs.append(start_preview(site, v["http"], v["preview"], work))
            base[site] = f"http://127.0.0.1:{v['preview']}"
        else:
            base[site] = f"http://127.0.0.1:{v['http']}"
    driver = None
    try:
        for v in sites.values():
            wait_port(v["grpc"], 180)
            wait_port(v["http"], 180)
        if args.vite:
            for v in sites.values():
                wait_port(v["preview"], 60)

        def agreement(site, partner):
            rows = cli_json(kordon, ["partners", "list", *server[site]], env) or []
            return next((r for r in rows if r["partner"] == partner), None)
        acc = wait_for("both sides to accept", lambda: (x := agreement("burgas", "edirne")) and
                       (z := agreement("edirne", "burgas")) and x["state"] == z["state"] == "accepted", time.time() + 90, 1)
        check("(a) both installations accept the agreement", bool(acc),
              f"{agreement('burgas', 'edirne')} / {agreement('edirne', 'burgas')}")

        driver = browser(downloads)
        for site in ("edirne", "burgas"):
            check(f"(a) {site}'s console ({base[site]}) signs in as the development identity", sign_in(driver, base[site]))

        # Over a minute and a half of Burgas's footage to ask for.
        time.sleep(max(0, args.footage_wait - (time.time() - started)))

        # (b) Edirne asks.
        ok = open_partners(driver, base["edirne"])
        check("(b) Edirne's console opens the Partners page from #nav-partners", bool(ok),
              driver.execute_script("return document.body.innerText")[:400])
        naming = unnamed_controls(driver)
        options = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#request-site option")]
        check("(b) the request form offers Burgas as a partner", "burgas" in options, str(options))
        gid, err = submit_request(driver, CASE)
        check("(b) the request from the console gives a pending outgoing grant",
              bool(gid) and row_state(driver, gid, "out") == "pending", f"{gid} {err}")
        if not gid:
            return

        # (c) Burgas sees it and approves.
        open_partners(driver, base["burgas"])
        seen = wait_state(driver, gid, "in", "pending", 60)
        text = row(driver, gid, "in").text if seen else ""
        check("(c) Burgas's console shows the request incoming and pending", seen)
        check("(c) ... with who asked, the camera, the reason and the case",
              "edirne" in text and "port-gate" in text and REASON in text and CASE in text, text[:400])
        naming += unnamed_controls(driver)
        decide(driver, gid, APPROVE_NOTE, "grant-approve")
        approved = wait_state(driver, gid, "in", "approved", 240)
        err = row(driver, gid, "in")
        check("(c) approving with a note from the console turns the row approved", approved,
              err.text[-400:] if err is not None else "")
        grants_b = cli_json(kordon, ["footage", "grants", *server["burgas"]], env) or []
        gb = next((g for g in grants_b if g["id"] == gid), {})
        check("(c) the CLI at Burgas reads it approved with the console's note",
              gb.get("state") == "approved" and gb.get("decision_reason") == APPROVE_NOTE, json.dumps(gb)[:400])

        # (d) Edirne sees it approved and downloads it.
        open_partners(driver, base["edirne"])
        approved_e = wait_state(driver, gid, "out", "approved", 90)
        check("(d) Edirne's console shows the request approved", approved_e)
        out_file = os.path.join(work, "grant-console.tar")
        if approved_e:
            sel = f'.grant-row[data-id="{gid}"][data-direction="out"]'
            driver.find_element(By.CSS_SELECTOR, f"{sel} .grant-download").click()
            time.sleep(0.5)
            answer_reason_dialog(driver)
            link = wait("the bundle's download link", lambda: driver.find_elements(By.CSS_SELECTOR, f"{sel} .grant-file"), 240, 0.5)
            check("(d) the download from the console offers the bundle as a file", bool(link),
                  driver.find_element(By.CSS_SELECTOR, sel).text[-400:])
            if link:
                data = blob_bytes(driver, link[0].get_attribute("href"))
                with open(out_file, "wb") as f:
                    f.write(data)
                sha = hashlib.sha256(data).hexdigest()
                grants_e = cli_json(kordon, ["footage", "grants", *server["edirne"]], env) or []
                ge = next((g for g in grants_e if g["id"] == gid), {})
                check("(d) the downloaded file's SHA-256 is the grant's (page and CLI agree)",
                      sha == ge.get("bundle_sha256") == link[0].get_attribute("data-sha256") and len(data) > 0,
                      f"{sha} / {ge.get('bundle_sha256')} / {link[0].get_attribute('data-sha256')} ({len(data)} bytes)")
                v = run(kordon, ["evidence", "verify", out_file, "--public-key", b["public"]], env)
                check("(d) `kordon evidence verify` verifies it with Burgas's evidence key",
                      v.returncode == 0 and "nothing was recorded" not in v.stdout, (v.stdout + v.stderr)[-600:])
                # The browser's own download of the link (informative: headless downloads vary).
                link[0].click()
                saved = wait("the browser's download", lambda: [f for f in os.listdir(downloads) if f.endswith(".tar")], 20)
                print(f"  the browser saved the link as {saved[0] if saved else '(nothing in 20 s)'}")
        naming += unnamed_controls(driver)

        # (e) a second request, refused.
        open_partners(driver, base["edirne"])
        gid2, err = submit_request(driver, CASE2)
        check("(e) a second request from the console is pending", bool(gid2), err)
        if gid2:
            open_partners(driver, base["burgas"])
            wait_state(driver, gid2, "in", "pending", 60)
            decide(driver, gid2, REFUSE_NOTE, "grant-refuse")
            refused = wait_state(driver, gid2, "in", "denied", 60)
            check("(e) refusing with a note from the console turns the row denied at Burgas", refused)
            shot(driver, shots, "partners-in")
            open_partners(driver, base["edirne"])
            refused_e = wait_state(driver, gid2, "out", "denied", 90)
            r2 = row(driver, gid2, "out")
            text = r2.text if r2 is not None else ""
            check("(e) Edirne's console shows it refused, with the note", refused_e and REFUSE_NOTE in text, text[:400])
            check("(e) ... and offers no download for it",
                  r2 is not None and not r2.find_elements(By.CSS_SELECTOR, ".grant-download"))
            shot(driver, shots, "partners-out")

        # (f) Edirne's access log: the console's request and download, with reason and case.
        rows = cli_json(kordon, ["audit", "list", "--site", "edirne", "--reason", "e2e check of the Partners page",
                                 *server["edirne"]], env) or []
        mine = [x for x in rows if any(gid in o for o in x.get("objects", []))]
        acts = {x["action"] for x in mine}
        check("(f) Edirne's access log holds the console's request and download of the grant",
              {"footage-request", "download"} <= acts, str(sorted(acts)))
        check("(f) ... with the reason and case given in the console",
              any(x.get("action") == "footage-request" and REASON in json.dumps(x) and CASE in json.dumps(x) for x in mine),
              json.dumps(mine[:2])[:600])

        # (g) languages and accessible names.
        english = driver.find_element(By.ID, "nav-partners").text
        for lang, word in (("bg", "Партньори"), ("tr", "Ortaklar")):
            Select(driver.find_element(By.ID, "lang")).select_by_value(lang)
            changed = wait(f"the page in {lang}", lambda: driver.find_element(By.ID, "nav-partners").text == word
                           and driver.execute_script("return document.body.dataset.page") == "partners"
                           and word in driver.find_element(By.TAG_NAME, "h1").text, 20)
            check(f"(g) the Partners page in {lang}", bool(changed), driver.find_element(By.TAG_NAME, "h1").text)
        Select(driver.find_element(By.ID, "lang")).select_by_value("en")
        wait("English again", lambda: driver.find_element(By.ID, "nav-partners").text == english, 15)
        check("(g) every form control on the Partners page has an accessible name", not naming,
              "\n".join(sorted(set(naming)))[:1500])
    finally:
        if driver is not None:
            close_browser(driver, os.path.join(work, "browser.log"))
        stop(procs)
        print_log_errors(work, ("burgas", "edirne"))
        print(summary())
        if failed():
            print(f"work directory kept: {work}")
            sys.exit(1)
        # Screenshots asked for elsewhere (--screenshots) stay; the work directory goes.
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
