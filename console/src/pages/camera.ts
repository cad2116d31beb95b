// One camera: near-live view, a day's timeline (recorded, gaps, detections, alerts), playback
// from any moment, speed and keyframe (segment start) steps; hovering the timeline (or moving
// its cursor with the keys) previews the still nearest that moment (#tl-preview).
import { h, fill } from "../dom";
import { t, enumLabel } from "../i18n";
import { client, ms, ts, dur, isAbort } from "../api";
import { ensureAudit, auditContext, currentAudit, onAuditChange } from "../reason";
import { StorageService, RecordingRangeKind, GapReason, SnapshotKind, type RecordingRange } from "../gen/kordon/storage/v1/storage_pb";
import { DetectionService, type Detection } from "../gen/kordon/detection/v1/detection_pb";
import { AlertingService, AlertSeverity, type Alert } from "../gen/kordon/alerting/v1/alerting_pb";
import { enumWord, errorBox, pageReady, type PageCtx } from "../ui";
import { dayOf, dayRange, fmtDateTime, fmtTime, siteZone } from "../time";
import { Player } from "../player";

export async function render({ root, signal, params, query }: PageCtx): Promise<void> {
  const [site = "", name = ""] = params;
  const camera = { site, camera: name };
  const zone = siteZone(site);
  const storage = client(StorageService);
  const at = Number(query.get("t")) || undefined;

  const day = h("input", { id: "day", type: "date", value: dayOf(at ?? Date.now(), zone), max: dayOf(Date.now(), zone), required: true });
  const speed = h("select", { id: "speed" }, [1, 2, 4, 8].map((s) => h("option", { value: String(s) }, `${s}×`)));
  // How much of the day the timeline shows: a fresh recording is a sliver of 24 hours.
  const zoom = h("select", { id: "zoom" }, [1440, 180, 60, 15].map((m) => h("option", { value: String(m) }, m >= 60 ? `${m / 60} h` : `${m} min`)));
  zoom.value = at === undefined ? "60" : "1440";
  const live = h("button", { id: "live", type: "button", class: "primary" }, t("camera.live"));
  const kfPrev = h("button", { id: "kf-prev", type: "button", class: "secondary", title: t("camera.kf_prev_title") }, t("camera.kf_prev"));
  const kfNext = h("button", { id: "kf-next", type: "button", class: "secondary", title: t("camera.kf_next_title") }, t("camera.kf_next"));
  const video = h("video", { id: "player", controls: true, muted: true, playsinline: true, preload: "none", "aria-label": t("camera.player_label", { camera: name }) });
  video.muted = true;
  const clock = h("output", { class: "clock", "aria-live": "off" }, "—");
  const errors = h("div", { class: "errors", "aria-live": "polite" });
  const timeline = h("div", {
    id: "timeline",
    class: "timeline",
    tabindex: 0,
    role: "slider",
    "aria-label": t("camera.timeline_label"),
    "aria-valuemin": 0,
    "aria-valuemax": 1440,
  });
  const summary = h("p", { class: "muted small", "aria-live": "polite" });
  // The hover preview: above the timeline (which clips its children), so beside it in a wrapper.
  const previewImg = h("img", { class: "tl-preview-img", width: 240, height: 135, decoding: "async", alt: "" });
  const previewCap = h("p", { class: "tl-preview-cap" });
  const preview = h("div", { id: "tl-preview", class: "tl-preview", hidden: true }, previewImg, previewCap);
  const player = new Player(video);
  signal.addEventListener("abort", () => player.destroy());

  root.append(
    h("div", { class: "page-head" },
      h("h1", null, name, h("span", { class: "muted" }, ` · ${site}`)),
      h("p", { class: "muted" }, t("common.times_in", { zone })),
    ),
    errors,
    h("div", { class: "camera-layout" },
      h("div", { class: "video-wrap" }, video),
      h("div", { class: "controls card" },
        h("div", { class: "field" }, h("label", { for: "day" }, t("camera.day")), day),
        h("div", { class: "field" }, h("label", { for: "speed" }, t("camera.speed")), speed),
        h("div", { class: "field" }, h("label", { for: "zoom" }, t("camera.zoom")), zoom),
        h("div", { class: "button-row" }, live),
        h("div", { class: "button-row" }, kfPrev, kfNext),
        h("p", null, h("span", { class: "muted" }, `${t("camera.showing")}: `), clock),
      ),
    ),
    h("section", { class: "timeline-section", "aria-labelledby": "tl-title" },
      h("h2", { id: "tl-title" }, t("camera.timeline")),
      h("div", { class: "tl-wrap" }, timeline, preview),
      h("ul", { class: "legend", "aria-label": t("camera.legend") },
        h("li", null, h("span", { class: "sw tl-rec-sw" }), t("camera.legend_recorded")),
        h("li", null, h("span", { class: "sw tl-gap-sw" }), t("camera.legend_gap")),
        h("li", null, h("span", { class: "sw tl-det-sw" }), t("camera.legend_detection")),
        h("li", null, h("span", { class: "sw tl-alert-sw" }), t("camera.legend_alert")),
      ),
      summary,
    ),
  );

  const showErr = (e: unknown) => {
    if (!isAbort(e)) errors.replaceChildren(errorBox(e));
  };

  let start = 0;
  let end = 0;
  // The part of the day the timeline shows (all of it at 24 h).
  let vStart = 0;
  let vEnd = 0;
  let ranges: RecordingRange[] = [];
  let dets: Detection[] = [];
  let alertList: Alert[] = [];
  let cursor = 0;
  const playhead = h("div", { class: "tl-playhead", "aria-hidden": "true" });
  const cursorEl = h("div", { class: "tl-cursor", "aria-hidden": "true" });
  const pct = (t0: number) => `${(((t0 - vStart) / (vEnd - vStart)) * 100).toFixed(3)}%`;
  const isToday = () => Date.now() < end;

  /** Shows the zoom's span of the day around `center`. */
  function setView(center: number) {
    const span = Math.min(Number(zoom.value) * 60_000, end - start);
    vStart = Math.min(Math.max(center - span / 2, start), end - span);
    vEnd = vStart + span;
  }

  function setCursor(x: number) {
    cursor = Math.min(Math.max(x, start), end - 1);
    if (cursor < vStart || cursor >= vEnd) {
      setView(cursor);
      draw();
    }
    cursorEl.style.left = pct(cursor);
    timeline.setAttribute("aria-valuenow", String(Math.round((cursor - start) / 60_000)));
    timeline.setAttribute("aria-valuetext", fmtDateTime(cursor, zone));
  }

  /** Plays from `from` to the day's end (today: on, live). */
  async function playFrom(from: number) {
    const audit = await ensureAudit();
    if (!audit) return;
    errors.replaceChildren();
    // Inside a gap: start at the next recorded range.
    const rec = ranges.filter((r) => r.kind === RecordingRangeKind.RECORDED);
    const inRec = rec.find((r) => (ms(r.range?.start) ?? 0) <= from && from < (ms(r.range?.end) ?? Infinity));
    if (!inRec) {
      const next = rec.find((r) => (ms(r.range?.start) ?? 0) > from);
      if (next) from = ms(next.range?.start) ?? from;
    }
    try {
      const r = await storage.getPlaybackUrl(
        { camera, range: { start: ts(from), end: isToday() ? undefined : ts(end) }, audit: auditContext(audit), urlTtl: dur(3600) },
        { signal },
      );
      const covered = ms(r.covered?.start) ?? from;
      await player.load(r.playback?.url ?? "", Math.max(0, (from - covered) / 1000), covered);
      setCursor(from);
    } catch (e) {
      showErr(e);
    }
  }

  live.addEventListener("click", async () => {
    const audit = await ensureAudit();
    if (!audit) return;
    errors.replaceChildren();
    try {
      // The newest recorded range (of the last 6 hours), played on as it grows.
      const now = Date.now();
      const r = await storage.listRecordings(
        { scope: { case: "camera", value: camera }, range: { start: ts(now - 6 * 3600_000) }, audit: auditContext(audit), page: { pageSize: 1000 } },
        { signal },
      );
      const newest = r.ranges.filter((x) => x.kind === RecordingRangeKind.RECORDED).pop();
      if (!newest) throw new Error(t("camera.nothing_recent"));
      const from = Math.max(ms(newest.range?.start) ?? now, (ms(newest.range?.end) ?? now) - 30_000);
      const p = await storage.getPlaybackUrl({ camera, range: { start: ts(from) }, audit: auditContext(audit), urlTtl: dur(3600) }, { signal });
      if (day.value !== dayOf(now, zone)) {
        day.value = dayOf(now, zone);
        await loadDay();
      }
      await player.load(p.playback?.url ?? "", -1, ms(p.covered?.start) ?? from);
    } catch (e) {
      showErr(e);
    }
  });

  speed.addEventListener("change", () => player.setRate(Number(speed.value)));

  async function step(dir: 1 | -1) {
    const audit = await ensureAudit();
    if (!audit) return;
    const now = player.wallClock() ?? cursor;
    try {
      const win = 15 * 60_000;
      const r = await storage.listSegments(
        { camera, range: dir > 0 ? { start: ts(now), end: ts(now + win) } : { start: ts(now - win), end: ts(now) }, audit: auditContext(audit), page: { pageSize: 1000 } },
        { signal },
      );
      const starts = r.segments.map((s) => ms(s.range?.start) ?? 0).filter((x) => x > 0);
      let target: number | undefined;
      if (dir > 0) target = starts.filter((x) => x > now + 100).sort((a, b) => a - b)[0];
      else target = starts.filter((x) => x < now - 1000).sort((a, b) => b - a)[0];
      if (target === undefined && dir > 0) {
        target = ranges.map((x) => ms(x.range?.start) ?? 0).find((x, i) => ranges[i].kind === RecordingRangeKind.RECORDED && x > now);
      }
      if (target === undefined) {
        errors.replaceChildren(h("p", { class: "error", role: "alert" }, t(dir > 0 ? "camera.no_next" : "camera.no_prev")));
        return;
      }
      if (target < start || target >= end) {
        day.value = dayOf(target, zone);
        await loadDay();
      }
      await playFrom(target);
    } catch (e) {
      showErr(e);
    }
  }
  kfNext.addEventListener("click", () => void step(1));
  kfPrev.addEventListener("click", () => void step(-1));

  timeline.addEventListener("click", (ev) => {
    const box = timeline.getBoundingClientRect();
    const x = (ev.clientX - box.left) / box.width;
    const when = vStart + x * (vEnd - vStart);
    setCursor(when);
    void playFrom(when);
  });
  timeline.addEventListener("keydown", (ev) => {
    const stepMs = ev.shiftKey ? 10 * 60_000 : 60_000;
    if (ev.key === "ArrowRight" || ev.key === "ArrowUp") setCursor(cursor + stepMs);
    else if (ev.key === "ArrowLeft" || ev.key === "ArrowDown") setCursor(cursor - stepMs);
    else if (ev.key === "Home") setCursor(start);
    else if (ev.key === "End") setCursor(Math.min(end, Date.now()) - 60_000);
    else if (ev.key === "Enter" || ev.key === " ") void playFrom(cursor);
    else return;
    ev.preventDefault();
  });

  video.addEventListener("timeupdate", () => {
    const w = player.wallClock();
    if (w === undefined) return;
    clock.textContent = fmtDateTime(w, zone);
    if (w >= vStart && w < vEnd) {
      playhead.hidden = false;
      playhead.style.left = pct(w);
    } else playhead.hidden = true;
  });
  video.addEventListener("playererror", (e) => showErr(new Error(`${t("camera.playback_failed")}: ${(e as CustomEvent).detail}`)));

  async function loadDay() {
    delete document.body.dataset.page;
    [start, end] = dayRange(day.value || dayOf(Date.now(), zone), zone);
    const until = Math.min(end, Date.now());
    fill(timeline, h("p", { class: "muted small tl-msg" }, t("common.loading")));
    errors.replaceChildren();
    const audit = currentAudit();
    ranges = [];
    if (audit && until > start) {
      try {
        ranges = [];
        let pageToken = "";
        for (let i = 0; i < 20; i++) {
          const r = await storage.listRecordings(
            { scope: { case: "camera", value: camera }, range: { start: ts(start), end: ts(until) }, audit: auditContext(audit), page: { pageSize: 1000, pageToken } },
            { signal },
          );
          ranges.push(...r.ranges);
          pageToken = r.page?.nextPageToken ?? "";
          if (!pageToken) break;
        }
      } catch (e) {
        showErr(e);
      }
    }
    // Detections and alerts are not footage: shown whether or not a reason is set.
    const [detR, alR] = await Promise.allSettled([
      (async () => {
        const out: Detection[] = [];
        let pageToken = "";
        for (let i = 0; i < 5; i++) {
          const r = await client(DetectionService).listDetections({ cameras: [camera], range: { start: ts(start), end: ts(until) }, page: { pageSize: 1000, pageToken } }, { signal });
          out.push(...r.detections);
          pageToken = r.page?.nextPageToken ?? "";
          if (!pageToken) break;
        }
        return out;
      })(),
      (async () => {
        const out: Alert[] = [];
        let pageToken = "";
        for (let i = 0; i < 5; i++) {
          const r = await client(AlertingService).listAlerts({ cameras: [camera], range: { start: ts(start), end: ts(end) }, page: { pageSize: 1000, pageToken } }, { signal });
          out.push(...r.alerts);
          pageToken = r.page?.nextPageToken ?? "";
          if (!pageToken) break;
        }
        return out;
      })(),
    ]);
    if (signal.aborted) return;
    dets = [];
    alertList = [];
    if (detR.status === "fulfilled") dets = detR.value;
    else showErr(detR.reason);
    if (alR.status === "fulfilled") alertList = alR.value;
    else showErr(alR.reason);
    const first = cursor >= start && cursor < end ? cursor : Math.max(start, until - 60_000);
    // Today: the newest moments at the right of the view; another day: centred on the cursor.
    setView(until < end ? Math.min(first, until - Number(zoom.value) * 30_000 + 5 * 60_000) : first);
    draw();
    setCursor(first);
    pageReady("camera");
  }

  /** Draws the timeline's view from the day's data. */
  function draw() {
    const until = Math.min(end, Date.now());
    const span = vEnd - vStart;
    const ticks: HTMLElement[] = [];
    const step = [3600_000 * 3, 3600_000, 30 * 60_000, 10 * 60_000, 5 * 60_000, 60_000, 30_000]
      .reverse()
      .find((x) => span / x <= 12) ?? 3 * 3600_000;
    for (let x = start + Math.ceil((vStart - start) / step) * step; x <= vEnd; x += step) {
      ticks.push(h("span", { class: "tl-tick", style: `left:${pct(x)}`, "aria-hidden": "true" }, fmtTime(x, zone).slice(0, 5)));
    }
    const inView = (a: number, b: number) => b > vStart && a < vEnd;
    const parts: HTMLElement[] = [];
    let recCount = 0;
    let gapCount = 0;
    if (!currentAudit()) {
      parts.push(h("button", { type: "button", class: "secondary tl-msg", onclick: () => void ensureAudit() }, t("camera.reason_for_timeline")));
    }
    for (const r of ranges) {
      const a = ms(r.range?.start) ?? start;
      const b = ms(r.range?.end) ?? until;
      if (r.kind === RecordingRangeKind.GAP) gapCount++;
      else recCount++;
      if (!inView(a, b)) continue;
      const width = `${(((b - a) / span) * 100).toFixed(3)}%`;
      const range = `${fmtTime(a, zone)}–${fmtTime(b, zone)}`;
      if (r.kind === RecordingRangeKind.GAP) {
        const why = enumLabel("gap_reason", enumWord(GapReason, r.gapReason));
        parts.push(h("div", { class: "tl-gap", style: `left:${pct(a)};width:${width}`, title: `${t("camera.gap")} ${range}: ${why}${r.gapDetail ? ` — ${r.gapDetail}` : ""}`, dataset: { reason: enumWord(GapReason, r.gapReason) } }));
      } else {
        parts.push(h("div", { class: "tl-recorded", style: `left:${pct(a)};width:${width}`, title: `${t("camera.recorded")} ${range} (${t("camera.segments", { n: r.segmentCount })})` }));
      }
    }
    // One detection marker per 0.2 % of the view, naming the classes seen.
    const buckets = new Map<number, { at: number; labels: Set<string>; n: number }>();
    for (const d of dets) {
      const at2 = ms(d.time) ?? 0;
      if (!inView(at2, at2 + 1)) continue;
      const k = Math.floor(((at2 - vStart) / span) * 500);
      const b = buckets.get(k) ?? { at: at2, labels: new Set<string>(), n: 0 };
      b.labels.add(d.classLabel);
      b.n++;
      buckets.set(k, b);
    }
    for (const b of buckets.values()) {
      parts.push(h("div", { class: "tl-detection", style: `left:${pct(b.at)}`, title: `${fmtTime(b.at, zone)} ${[...b.labels].join(", ")} (${b.n})` }));
    }
    let alertCount = 0;
    for (const a of alertList) {
      const at2 = ms(a.openedAt);
      if (at2 === undefined || at2 < start || at2 >= end) continue;
      alertCount++;
      if (!inView(at2, at2 + 1)) continue;
      const sev = enumWord(AlertSeverity, a.severity);
      parts.push(h("div", { class: `tl-alert sev-${sev}`, style: `left:${pct(at2)}`, dataset: { id: a.id }, title: `${fmtTime(at2, zone)} ${a.ruleName} · ${enumLabel("severity", sev)} · ${a.classLabel}` }));
    }
    fill(timeline, ticks, parts, cursorEl, playhead);
    playhead.hidden = true;
    cursorEl.style.left = pct(cursor);
    summary.textContent = t("camera.summary", { rec: recCount, gaps: gapCount, det: dets.length, alerts: alertCount });
    refreshPreview();
  }

  // --- Hover preview: the view's stills, loaded once per view (on its first hover), kept
  // sorted by capture time; the nearest within a tolerance is shown, no request per move.
  interface Still {
    at: number;
    url: string;
  }
  let stills: Still[] = [];
  let stillsKey = "";
  let stillsState: "idle" | "loading" | "ready" | "error" = "idle";
  let stillsLoadedAt = 0;
  let stillsAbort: AbortController | undefined;
  const URL_TTL_S = 1800;
  const viewKey = (a: { reason: string; caseId: string }) => `${vStart}|${vEnd}|${a.reason}|${a.caseId}`;

  async function loadStills() {
    const audit = currentAudit();
    if (!audit || vEnd <= vStart) {
      stillsAbort?.abort();
      stills = [];
      stillsKey = "";
      stillsState = "idle";
      return;
    }
    const key = viewKey(audit);
    const fresh = Date.now() - stillsLoadedAt < (URL_TTL_S - 300) * 1000;
    if (key === stillsKey && (stillsState === "loading" || (stillsState === "ready" && fresh))) return;
    stillsAbort?.abort();
    const ac = new AbortController();
    stillsAbort = ac;
    const sig = ac.signal; // aborted with the page too (below)
    stillsKey = key;
    stillsState = "loading";
    stills = [];
    refreshPreview();
    const [a, b] = [vStart, vEnd];
    try {
      let out: Still[] = [];
      // Thumbnails (transcode's, for the timeline); without any, whatever stills there are
      // (detections' snapshots).
      for (const kind of [SnapshotKind.THUMBNAIL, SnapshotKind.UNSPECIFIED]) {
        let pageToken = "";
        for (let i = 0; i < 5; i++) {
          const r = await storage.listSnapshots(
            { camera, range: { start: ts(a), end: ts(b) }, kind, audit: auditContext(audit), urlTtl: dur(URL_TTL_S), page: { pageSize: 1000, pageToken } },
            { signal: sig },
          );
          for (const x of r.snapshots) {
            const at2 = ms(x.snapshot?.capturedAt);
            if (at2 !== undefined && x.media?.url) out.push({ at: at2, url: x.media.url });
          }
          pageToken = r.page?.nextPageToken ?? "";
          if (!pageToken) break;
        }
        if (out.length) break;
      }
      if (stillsAbort !== ac) return;
      out = out.sort((x, y) => x.at - y.at);
      stills = out;
      stillsState = "ready";
      stillsLoadedAt = Date.now();
    } catch (e) {
      if (stillsAbort !== ac || isAbort(e)) return;
      stills = [];
      stillsState = "error";
    }
    refreshPreview();
  }

  /** The still nearest `when` within the view's tolerance (span/100, at least 30 s). */
  function nearestStill(when: number): Still | undefined {
    if (!stills.length) return undefined;
    let lo = 0;
    let hi = stills.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (stills[mid].at < when) lo = mid + 1;
      else hi = mid;
    }
    const cands = [stills[lo - 1], stills[lo]].filter((x): x is Still => x !== undefined);
    const best = cands.sort((x, y) => Math.abs(x.at - when) - Math.abs(y.at - when))[0];
    const tol = Math.max((vEnd - vStart) / 100, 30_000);
    return best && Math.abs(best.at - when) <= tol ? best : undefined;
  }

  let previewAt: number | undefined;
  let previewX = 0;
  let pointerInside = false;
  let dismissed = false;

  /** Shows the preview for moment `when`, centred on `x` px from the timeline's left (clamped). */
  function showPreview(when: number, x: number) {
    previewAt = when;
    previewX = x;
    preview.hidden = false;
    refreshPreview();
  }

  function hidePreview() {
    preview.hidden = true;
    previewAt = undefined;
  }

  function refreshPreview() {
    if (preview.hidden || previewAt === undefined) return;
    const when = previewAt;
    const audit = currentAudit();
    let state: string;
    if (!audit) {
      state = "reason";
      previewCap.replaceChildren(h("strong", null, fmtTime(when, zone)), h("br"), t("camera.preview_reason"));
    } else {
      const current = stillsKey === viewKey(audit);
      // The view's stills load on its first hover (each listing is a logged footage read, so
      // none for views nobody hovers); URLs about to expire: again, once.
      if (!current || (stillsState === "ready" && Date.now() - stillsLoadedAt >= (URL_TTL_S - 300) * 1000)) void loadStills();
      const st = current ? stillsState : "loading";
      const still = st === "ready" ? nearestStill(when) : undefined;
      if (still) {
        state = "still";
        if (previewImg.getAttribute("src") !== still.url) previewImg.src = still.url;
        previewImg.dataset.time = String(still.at);
        previewImg.alt = t("camera.preview_alt", { camera: name, time: fmtDateTime(still.at, zone) });
        previewCap.replaceChildren(h("strong", null, fmtTime(still.at, zone)));
      } else {
        state = st === "ready" ? "none" : st === "error" ? "error" : "loading";
        const msg = state === "none" ? t("camera.preview_none") : state === "error" ? t("camera.preview_error") : t("common.loading");
        previewCap.replaceChildren(h("strong", null, fmtTime(when, zone)), h("br"), msg);
      }
    }
    previewImg.hidden = state !== "still";
    if (state !== "still") {
      previewImg.removeAttribute("src");
      delete previewImg.dataset.time;
      previewImg.alt = "";
    }
    preview.dataset.state = state;
    preview.dataset.moment = String(Math.round(when));
    // Centred on the moment, kept inside the timeline.
    const w = timeline.clientWidth;
    const pw = preview.offsetWidth;
    preview.style.left = `${Math.max(0, Math.min(previewX - pw / 2, w - pw))}px`;
  }

  let moveFrame = 0;
  let lastClientX = 0;
  timeline.addEventListener("pointerenter", () => {
    pointerInside = true;
    dismissed = false;
  });
  timeline.addEventListener("pointermove", (ev) => {
    pointerInside = true;
    lastClientX = ev.clientX;
    if (dismissed || moveFrame || vEnd <= vStart) return;
    moveFrame = requestAnimationFrame(() => {
      moveFrame = 0;
      if (dismissed || !pointerInside) return;
      const box = timeline.getBoundingClientRect();
      const x = Math.min(Math.max(lastClientX - box.left, 0), box.width);
      showPreview(vStart + (x / box.width) * (vEnd - vStart), x);
    });
  });
  timeline.addEventListener("pointerleave", () => {
    pointerInside = false;
    dismissed = false;
    hidePreview();
  });
  timeline.addEventListener("blur", () => {
    if (!pointerInside) hidePreview();
  });
  /** After a keyboard move of the cursor: the preview at the cursor. */
  const previewCursor = () => {
    dismissed = false;
    const w = timeline.clientWidth;
    showPreview(cursor, ((cursor - vStart) / (vEnd - vStart)) * w);
  };
  timeline.addEventListener("keydown", (ev) => {
    if (["ArrowRight", "ArrowUp", "ArrowLeft", "ArrowDown", "Home", "End"].includes(ev.key)) previewCursor();
  });
  const onEscape = (ev: KeyboardEvent) => {
    if (ev.key !== "Escape" || preview.hidden) return;
    hidePreview();
    dismissed = true;
  };
  document.addEventListener("keydown", onEscape);
  signal.addEventListener("abort", () => {
    document.removeEventListener("keydown", onEscape);
    cancelAnimationFrame(moveFrame);
    stillsAbort?.abort();
  });

  zoom.addEventListener("change", () => {
    setView(player.wallClock() ?? cursor);
    draw();
  });

  day.addEventListener("change", () => void loadDay());
  const off = onAuditChange(() => void loadDay());
  signal.addEventListener("abort", off);

  if (!currentAudit()) void ensureAudit();
  await loadDay();
  if (at !== undefined && !signal.aborted) {
    setCursor(at);
    void playFrom(at);
  }
}
