#!/usr/bin/env python3
"""The web console in a real browser: Debian's Chromium, driven by Selenium through Debian's
chromedriver, against `kordon standalone` (its demo cameras show the real street clip).

    source scripts/lib.sh
    "$KORDON_VENV/bin/python" e2e/console_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" \
        [--screenshots docs/console]

The console is the binary's own (built into it from console/dist), served on standalone's HTTP
listener with the gRPC-Web API it calls. Checks, at 1366x768:
  (a) the page is served with its CSP; sign-in offers the development identity and the header
      shows the principal;
  (b) the cameras page shows the four demo cameras recording;
  (c) the camera page asks for a reason before any footage, and the timeline shows recorded
      ranges; near-live plays (the <video>'s currentTime advances), and so does a click on the
      timeline a minute back;
  (d) the alerts inbox shows the demo rule's alert live; a note being typed survives the row's
      live redraw; acknowledging it with that note is what `kordon alerts get` (another client)
      then reads, attributed;
  (e) an evidence export of one camera over a past minute shows progress, offers a download, and
      the downloaded bundle verifies with `kordon evidence verify`; the console's own check
      (storage's VerifyEvidenceBundle) finds it intact, and a copy with a flipped byte not;
  (f) the audit page lists the console's reads and the export under the reason given, and the
      chain verifies;
  (g) Bulgarian and Turkish: the page's language and its words change, and back;
  (h) every form control on every page has an accessible name;
  (i) at a tablet's 768 px (portrait) no page scrolls sideways.
Prints the console's page weight (gzip, as served) and the time from navigation to the first
footage frame (informative, not a pass/fail figure), then `e2e: N passed, M failed`. Screenshots
of each page go to --screenshots (default: the work directory, kept when a check fails).
"""

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request

from common import check, failed, free_ports, run, stop, summary, wait_port
from detection_check import ort_env

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

DEMO = {("burgas", "port-gate"), ("burgas", "pier-2"), ("edirne", "kapikule-1"), ("edirne", "kapikule-2")}
REASON = "console e2e check"
CASE = "BG-BGS-2026-0042"


def browser(download_dir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,768",
              "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--lang=en-US",
              "--disable-gpu"]:
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en",
                                           "download.default_directory": download_dir})
    driver = webdriver.Chrome(options=opts,
                              service=Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    driver.set_window_size(1366, 768)
    return driver


def close_browser(driver, log_path):
    """Saves the browser's console log (one JSON entry a line) to `log_path`, then quits."""
    try:
        with open(log_path, "w") as f:
            for entry in driver.get_log("browser"):
                f.write(json.dumps(entry) + "\n")
    except WebDriverException:
        pass
    driver.quit()


def wait(what, fn, timeout=60, every=0.25):
    """fn()'s first truthy value within `timeout` s, else None (the caller checks it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except WebDriverException:
            pass
        time.sleep(every)
    print(f"  (waited {timeout}s for {what})")
    return None


def page(driver, name, timeout=60):
    return wait(f"page {name}", lambda: driver.execute_script("return document.body.dataset.page") == name, timeout)


def shot(driver, out, name):
    """The whole page at the 1366-pixel width (the viewport grows to the page's height)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1366, "height": max(768, min(int(height), 2400)), "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.3)
    driver.save_screenshot(os.path.join(out, f"{name}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def unnamed_controls(driver):
    """Form controls (visible ones) without an accessible name: label, aria-label(ledby), title."""
    return driver.execute_script("""
      const out = [];
      for (const el of document.querySelectorAll('input, select, textarea, button')) {
        if (el.type === 'hidden' || el.offsetParent === null) continue;
        const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') ||
          el.getAttribute('aria-labelledby') || el.title ||
          (el.tagName === 'BUTTON' && el.textContent.trim());
        if (!named) out.push(el.outerHTML.slice(0, 120));
      }
      return out;""")


def set_value(driver, el, value):
    """Sets an input's value as typing would (datetime-local's typed format is locale-bound)."""
    driver.execute_script("""
      const [el, v] = arguments; el.value = v;
      el.dispatchEvent(new Event('input', {bubbles: true}));
      el.dispatchEvent(new Event('change', {bubbles: true}));""", el, value)


def page_weight(base):
    """Bytes as served with gzip: the page and what it loads first, and the lazily loaded rest."""
    def get(path):
        req = urllib.request.Request(base + path, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            return body, r.headers
    html, headers = get("/")
    text = gzip.decompress(html).decode() if headers.get("Content-Encoding") == "gzip" else html.decode()
    first = {"html": len(html), "refs": set()}
    for kind, ref in re.findall(r'<(script|link)[^>]+(?:src|href)="(/assets/[^"]+)"', text):
        first["refs"].add(ref)
        body, _ = get(ref)
        key = "css" if ref.endswith(".css") else "js"
        first[key] = first.get(key, 0) + len(body)
    return headers, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kordon", required=True)
    ap.add_argument("--screenshots", help="directory for the page screenshots (default: the work directory)")
    ap.add_argument("--alert-deadline", type=int, default=600, help="seconds to wait for the demo alert")
    args = ap.parse_args()
    kordon = os.path.abspath(args.kordon)
    env = ort_env({k: v for k, v in os.environ.items() if not k.startswith("KORDON_")})
    env["KORDON_LOG"] = "warn,kordon=info"
    work = tempfile.mkdtemp(prefix="kordon-console-")
    shots = os.path.abspath(args.screenshots) if args.screenshots else os.path.join(work, "screenshots")
    os.makedirs(shots, exist_ok=True)
    downloads = os.path.join(work, "downloads")
    os.makedirs(downloads)
    grpc_port, admin_port, http_port = free_ports(3)
    server = ["--server", f"http://127.0.0.1:{grpc_port}"]
    base = f"http://127.0.0.1:{http_port}"
    print(f"the web console in Chromium (standalone in {work})")
    log = open(os.path.join(work, "standalone.log"), "w")
    proc = subprocess.Popen(
        [kordon, "standalone", "--data-dir", os.path.join(work, "data"),
         "--grpc-listen", f"127.0.0.1:{grpc_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
         "--http-listen", f"127.0.0.1:{http_port}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    driver = None
    t_start = time.time()
    try:
        wait_port(http_port, timeout=180)
        wait_port(grpc_port, timeout=180)

        # (a) the page, its headers and weight; sign-in.
        headers, first = page_weight(base)
        check("(a) the console is served with a Content-Security-Policy",
              "script-src 'self'" in (headers.get("Content-Security-Policy") or ""), str(dict(headers)))
        print(f"  page weight (gzip, as served): first load {(first['html'] + first.get('js', 0) + first.get('css', 0)) / 1024:.1f} KiB "
              f"(html {first.get('html', 0)} B, js {first.get('js', 0) / 1024:.1f} KiB, "
              f"css {first.get('css', 0) / 1024:.1f} KiB)")
        dist = os.path.join(os.path.dirname(__file__), "..", "console", "dist", "assets")
        if os.path.isdir(dist):
            # The page's own chunks and the player (hls.js), fetched when a page needs them.
            later = [f for f in os.listdir(dist) if f.endswith(".js") and f"/assets/{f}" not in first["refs"]]
            lazy = sum(len(gzip.compress(open(os.path.join(dist, f), "rb").read(), 9)) for f in later)
            print(f"  loaded later (page chunks and the player): {lazy / 1024:.1f} KiB in {len(later)} files")

        driver = browser(downloads)
        driver.get(base + "/")
        dev = wait("the development identity button", lambda: driver.find_element(By.ID, "signin-dev").is_displayed() and
                   driver.find_element(By.ID, "signin-dev"), 60)
        check("(a) sign-in offers the development identity", bool(dev))
        shot(driver, shots, "signin")
        naming = unnamed_controls(driver)
        dev.click()
        who = wait("the principal in the header", lambda: driver.find_element(By.ID, "whoami").text.strip() not in ("", "…", "?")
                   and driver.find_element(By.ID, "whoami").text, 30)
        check("(a) signed in: the header names the principal", bool(who), str(who))

        # (b) cameras.
        driver.get(base + "/#/cameras")
        page(driver, "cameras")

        def recording():
            cards = driver.find_elements(By.CSS_SELECTOR, ".camera-card")
            return {(c.get_attribute("data-site"), c.get_attribute("data-camera")) for c in cards
                    if c.get_attribute("data-state") == "recording"}
        rec = wait("the demo cameras recording", lambda: recording() >= DEMO and recording(), 180)
        check("(b) the cameras page shows the four demo cameras recording", bool(rec), str(rec or recording()))
        naming += unnamed_controls(driver)

        # (c) the camera page: a reason first, then the timeline and playback.
        def video_time():
            return driver.execute_script("const v = document.getElementById('player'); return v ? v.currentTime : -1")
        time.sleep(max(0, 75 - (time.time() - t_start)))  # over a minute of footage to seek in
        card = driver.find_element(By.CSS_SELECTOR, '.camera-card[data-site="burgas"][data-camera="port-gate"] .camera-open')
        card.click()
        page(driver, "camera")
        # The page asks as soon as it would show footage (thumbnails, markers), or at "live".
        dialog = wait("the reason dialog", lambda: driver.find_element(By.ID, "reason-dialog").is_displayed(), 10)
        if not dialog:
            driver.find_element(By.ID, "live").click()
            dialog = wait("the reason dialog", lambda: driver.find_element(By.ID, "reason-dialog").is_displayed(), 15)
        check("(c) footage asks for a reason first", bool(dialog))
        shot(driver, shots, "reason")
        naming += unnamed_controls(driver)
        driver.find_element(By.ID, "reason-input").send_keys(REASON)
        driver.find_element(By.ID, "case-input").send_keys(CASE)
        driver.find_element(By.ID, "reason-submit").click()
        wait("the dialog to close", lambda: not driver.find_element(By.ID, "reason-dialog").is_displayed(), 10)
        if video_time() <= 0:
            driver.find_element(By.ID, "live").click()

        t0 = wait("playback to start", lambda: video_time() > 0 and video_time(), 60)
        t1 = wait("playback to advance", lambda: (t0 or 0) and video_time() > t0 + 1.0 and video_time(), 30)
        check("(c) near-live plays: the video's currentTime advances", bool(t0 and t1), f"{t0} -> {t1}")
        bars = wait("recorded ranges on the timeline", lambda: driver.find_elements(By.CSS_SELECTOR, "#timeline .tl-recorded"), 30)
        check("(c) the timeline shows recorded ranges", bool(bars))
        naming += unnamed_controls(driver)
        shot(driver, shots, "camera")

        # A click on the timeline a little before the newest recorded moment plays from there.
        tl = driver.find_element(By.ID, "timeline")
        driver.execute_script("""
          const tl = arguments[0], r = tl.getBoundingClientRect();
          const b = [...tl.querySelectorAll('.tl-recorded')].map(e => e.getBoundingClientRect())
            .sort((p, q) => p.right - q.right).pop();
          const x = b.right - Math.min(30, b.width / 2);
          for (const type of ['pointerdown', 'pointerup', 'click'])
            tl.dispatchEvent(new MouseEvent(type, {bubbles: true, clientX: x, clientY: r.top + r.height / 2}));""", tl)
        time.sleep(1)
        s0 = wait("seeked playback", lambda: video_time() > 0 and video_time(), 30)
        s1 = wait("seeked playback to advance", lambda: (s0 or 0) and video_time() > s0 + 1.0 and video_time(), 30)
        check("(c) a click on the timeline plays from that moment", bool(s0 and s1), f"{s0} -> {s1}")

        # Hovering the timeline over the recording shows the nearest still (a thumbnail, or a
        # detection's snapshot) with its time.
        def hover_still():
            driver.execute_script("""
              const tl = document.getElementById('timeline'), r = tl.getBoundingClientRect();
              const b = [...tl.querySelectorAll('.tl-recorded')].map(e => e.getBoundingClientRect())
                .sort((p, q) => p.right - q.right).pop();
              const x = b.left + b.width / 2;
              for (const type of ['pointerenter', 'pointermove'])
                tl.dispatchEvent(new PointerEvent(type, {bubbles: true, clientX: x, clientY: r.top + r.height / 2}));""")
            return driver.execute_script("""
              const p = document.getElementById('tl-preview'), img = p && p.querySelector('img');
              return p && !p.hidden && p.dataset.state === 'still' && img.complete && img.naturalWidth > 0
                && img.dataset.time;""")
        check("(c) hovering the timeline shows the nearest still", bool(wait("a still on hover", hover_still, 30, 0.5)))
        shot(driver, shots, "camera-hover")

        # Time to first frame: a fresh page load of the camera (the reason is kept for the
        # session), the near-live button pressed at once.
        driver.get(base + "/#/cameras")
        page(driver, "cameras")
        started = time.time()
        driver.get(base + "/#/camera/burgas/port-gate")
        page(driver, "camera")
        driver.find_element(By.ID, "live").click()
        first_frame = wait("the first frame", lambda: driver.execute_script(
            "const v = document.getElementById('player'); return v && v.readyState >= 2 && v.currentTime > 0"), 60, 0.05)
        if first_frame:
            print(f"  navigation to first footage frame: {time.time() - started:.2f} s")

        # (d) the alerts inbox, live.
        driver.find_element(By.ID, "nav-alerts").click()
        page(driver, "alerts")
        row = wait("the demo alert in the inbox", lambda: driver.find_elements(By.CSS_SELECTOR, ".alert-row"),
                   args.alert_deadline, 1)
        check("(d) the demo rule's alert arrives in the inbox", bool(row))
        # Rows are redrawn as events arrive: find them again by id for each step.
        alert_id = row and wait("the alert's id", lambda: driver.find_element(By.CSS_SELECTOR, ".alert-row").get_attribute("data-id"), 10)
        if alert_id:
            sel = f'.alert-row[data-id="{alert_id}"]'
            text = "seen from the console"
            note_of = lambda: driver.find_element(By.CSS_SELECTOR, f"{sel} .alert-note").get_attribute("value")

            def type_note():
                box = driver.find_element(By.CSS_SELECTOR, f"{sel} .alert-note")
                box.clear()
                box.send_keys(text)
                return note_of() == text

            wait("the note typed", type_note, 20)
            # The live alert's row is redrawn on each update (every 5 s while the person stays);
            # what the officer typed must survive that.
            driver.execute_script(f"document.querySelector('{sel}').dataset.drawn = 'before'")
            redrawn = wait("the row redrawn by a live update", lambda: driver.execute_script(
                f"const r = document.querySelector('{sel}'); return r && r.dataset.drawn !== 'before'"), 30)
            if redrawn:
                check("(d) a note being typed survives the row's live redraw", note_of() == text, repr(note_of()))
            else:
                print("  (no live update of the alert within 30 s: the redraw was not checked)")
            wait("the acknowledge click", lambda: driver.find_element(By.CSS_SELECTOR, f"{sel} .alert-ack").click() or True, 10)
            acked = wait("the alert acknowledged", lambda: driver.find_element(
                By.CSS_SELECTOR, sel).get_attribute("data-state") == "acknowledged", 30)
            check("(d) acknowledging from the console updates the inbox", bool(acked))
            pic = wait("the alert's snapshot", lambda: driver.execute_script(f"""
              const img = document.querySelector('{sel} .snapshot img');
              return img && img.complete && img.naturalWidth > 0 &&
                document.querySelectorAll('{sel} .snapshot-box').length;"""), 30)
            check("(d) the alert shows its snapshot with the object's box", bool(pic))
            shot(driver, shots, "alerts")
            naming += unnamed_controls(driver)
            r = run(kordon, ["alerts", "get", alert_id, "--output", "json", *server], env)
            a = json.loads(r.stdout) if r.returncode == 0 else {}
            got = json.dumps(a)
            check("(d) another client reads it acknowledged, with the console's note",
                  "acknowledged" in got.lower() and a.get("acknowledge_note") == text, r.stderr[-400:] or got[:600])

        # (e) evidence: one camera, a past minute.
        driver.find_element(By.ID, "nav-evidence").click()
        page(driver, "evidence")
        box = driver.find_element(By.CSS_SELECTOR, '#export-cameras input[value="burgas/port-gate"]')
        if not box.is_selected():
            box.click()
        now = driver.execute_script("return Date.now()") / 1000.0
        # The form's times are in the site's zone (the page says which), not the browser's.
        fmt = lambda t: driver.execute_script("""
          const f = new Intl.DateTimeFormat('sv-SE', {timeZone: 'Europe/Sofia', year: 'numeric', month: '2-digit',
            day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'});
          return f.format(new Date(arguments[0] * 1000)).replace(' ', 'T');""", t)
        set_value(driver, driver.find_element(By.ID, "export-from"), fmt(now - 60))
        set_value(driver, driver.find_element(By.ID, "export-to"), fmt(now - 30))
        for field, value in (("export-case", CASE), ("export-reason", REASON)):
            el = driver.find_element(By.ID, field)
            el.clear()
            el.send_keys(value)
        naming += unnamed_controls(driver)
        driver.find_element(By.ID, "export-submit").click()
        saw_progress = wait("the progress bar", lambda: driver.find_element(By.ID, "export-progress").is_displayed(), 30, 0.05)
        link = wait("the download link", lambda: driver.find_elements(By.ID, "export-download"), 180, 0.5)
        err = driver.find_element(By.ID, "export-error").text
        check("(e) the export shows progress and offers a download", bool(saw_progress and link), err)
        shot(driver, shots, "evidence")
        if link:
            href = link[0].get_attribute("href")
            bundle = os.path.join(work, "bundle.tar")
            with urllib.request.urlopen(href, timeout=60) as r, open(bundle, "wb") as f:
                shutil.copyfileobj(r, f)
            # The site's key from another client (the CLI asks the server for the bundle).
            bundle_id = re.sub(r"^evidence-|\.tar$", "", link[0].get_attribute("download") or "")
            g = run(kordon, ["evidence", "get", bundle_id, "--reason", REASON, "--case", CASE,
                             "-o", os.path.join(work, "bundle-cli.tar"), *server], env, 300)
            key = next((l.split()[-1] for l in g.stderr.splitlines() if l.startswith("site signing key")), "")
            v = run(kordon, ["evidence", "verify", bundle, "--public-key", key], env)
            check("(e) the bundle downloaded from the console verifies with the site's key (kordon evidence verify)",
                  g.returncode == 0 and v.returncode == 0 and "nothing was recorded" not in v.stdout,
                  (g.stderr + v.stdout + v.stderr)[-800:])

            # The server checks it from the console too (the browser sends digests, not footage),
            # and a copy with one flipped byte in a segment is not intact, naming that file.
            tampered = os.path.join(work, "tampered.tar")
            shutil.copy(bundle, tampered)
            with tarfile.open(bundle) as tf:
                seg = next(m for m in tf.getmembers() if m.isfile() and m.name.startswith("segments/"))
            with open(tampered, "r+b") as f:
                f.seek(seg.offset_data + seg.size // 2)
                b = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([b[0] ^ 0xFF]))
            for path, want in ((bundle, "intact"), (tampered, "not_intact")):
                driver.find_element(By.ID, "verify-file").send_keys(path)
                driver.find_element(By.ID, "verify-submit").click()
                got = wait(f"the verdict on {os.path.basename(path)}", lambda: driver.find_element(
                    By.ID, "verify-result").get_attribute("data-verdict"), 60)
                problems = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#verify-result .verify-problem")]
                if want == "intact":
                    check("(e) the console's bundle check (server-side) finds the download intact",
                          got == "intact", f"{got}: {problems}")
                else:
                    check("(e) ... and a copy with one flipped byte not intact, naming the segment",
                          got == "not_intact" and any(seg.name in p for p in problems), f"{got}: {problems}")
                    shot(driver, shots, "evidence-verify")
                driver.execute_script("document.getElementById('verify-result').removeAttribute('data-verdict')")

            # The earlier bundles list it, and gives its download link again.
            sel = f'.bundle-row[data-id="{bundle_id}"]'
            listed = wait("the bundle in the earlier bundles", lambda: driver.find_elements(By.CSS_SELECTOR, sel), 30)
            if listed:
                wait("the download-link click", lambda: driver.find_element(By.CSS_SELECTOR, f"{sel} .bundle-link").click() or True, 10)
            again = wait("the download link again", lambda: driver.find_elements(By.CSS_SELECTOR, f"{sel} .bundle-download"), 30)
            check("(e) the earlier bundles list it ready and give its download link again",
                  bool(listed and again) and listed[0].get_attribute("data-state") == "ready")

        # (f) audit.
        driver.find_element(By.ID, "nav-audit").click()
        page(driver, "audit")
        driver.find_element(By.ID, "audit-case").send_keys(CASE)
        driver.find_element(By.ID, "audit-apply").click()
        time.sleep(1)
        page(driver, "audit")
        rows = wait("access-log rows", lambda: driver.find_elements(By.CSS_SELECTOR, ".audit-row"), 30)
        actions = {r.get_attribute("data-action") for r in rows or []}
        texts = " ".join(r.text for r in rows or [])
        check("(f) the audit page lists the console's footage reads and the export under its case",
              bool(rows) and REASON in texts and any("export" in (a or "") for a in actions),
              f"actions {actions}")
        driver.find_element(By.ID, "audit-verify").click()
        ok = wait("the verification result", lambda: driver.find_elements(By.CSS_SELECTOR, '#audit-verify-result [data-intact="true"]'), 60)
        check("(f) the access log's chain verifies from the console", bool(ok),
              driver.find_element(By.ID, "audit-verify-result").text)
        naming += unnamed_controls(driver)
        shot(driver, shots, "audit")

        # (g) languages.
        driver.get(base + "/#/cameras")
        page(driver, "cameras")
        english = driver.find_element(By.ID, "nav-cameras").text
        for lang in ("bg", "tr"):
            Select(driver.find_element(By.ID, "lang")).select_by_value(lang)
            changed = wait(f"the console in {lang}", lambda: driver.execute_script("return document.documentElement.lang") == lang
                           and driver.find_element(By.ID, "nav-cameras").text != english, 15)
            page(driver, "cameras")
            check(f"(g) switching to {lang} changes the page's language and words", bool(changed),
                  driver.find_element(By.ID, "nav-cameras").text)
            shot(driver, shots, f"cameras-{lang}")
        Select(driver.find_element(By.ID, "lang")).select_by_value("en")
        back_en = wait("English again", lambda: driver.find_element(By.ID, "nav-cameras").text == english, 15)
        check("(g) and back to English", bool(back_en))
        page(driver, "cameras")
        shot(driver, shots, "cameras")

        # (i) a tablet (768 px wide, portrait): no page scrolls sideways.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 768, "height": 1024, "deviceScaleFactor": 1, "mobile": False})
        wide = {}
        for name, url in (("cameras", "/#/cameras"), ("camera", "/#/camera/burgas/port-gate"),
                          ("alerts", "/#/alerts"), ("evidence", "/#/evidence"), ("audit", "/#/audit"),
                          ("partners", "/#/partners")):
            driver.get(base + url)
            page(driver, name, 30)
            time.sleep(0.5)
            w = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            if w[0] > w[1] + 1:
                wide[name] = w
            if name == "camera":
                driver.save_screenshot(os.path.join(shots, "camera-tablet.png"))
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        check("(i) at a tablet's 768 px no page scrolls sideways", not wide, f"[scroll width, window width]: {wide}")

        # (h) accessible names.
        check("(h) every form control has an accessible name", not naming, "\n".join(sorted(set(naming)))[:1500])
    finally:
        if driver is not None:
            close_browser(driver, os.path.join(work, "browser.log"))
        stop([proc])
        log.close()
    print(summary())
    if failed():
        print(f"work directory kept: {work}")
        raise SystemExit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
