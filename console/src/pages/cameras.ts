// Sites and cameras: recording state, today's gaps, detector, latest thumbnail; filter by site.
import { h, fill } from "../dom";
import { t, enumLabel } from "../i18n";
import { client, ms, ts, errorText, isAbort } from "../api";
import { currentAudit, askReason, auditContext, onAuditChange, type Audit } from "../reason";
import { CameraState, IngestService, type CameraStatus } from "../gen/kordon/ingest/v1/ingest_pb";
import { DetectionService, DetectorState, type CameraDetectorStatus } from "../gen/kordon/detection/v1/detection_pb";
import { StorageService, RecordingRangeKind, SnapshotKind, GapReason } from "../gen/kordon/storage/v1/storage_pb";
import { VideoCodec } from "../gen/kordon/common/v1/common_pb";
import { principalSites } from "../main";
import { cameraHref, cameraKey, enumWord, errorBox, listCameras, loading, pageReady, type PageCtx } from "../ui";
import { dayOf, dayRange, fmtDateTime, siteZone } from "../time";

interface Card {
  el: HTMLElement;
  status: HTMLElement;
  detector: HTMLElement;
  gaps: HTMLElement;
  thumb: HTMLElement;
}

export async function render({ root, signal }: PageCtx): Promise<void> {
  const head = h("div", { class: "page-head" }, h("h1", null, t("cameras.title")));
  const errors = h("div", { class: "errors" });
  const grid = h("div", { class: "camera-grid", role: "list" });
  root.append(head, errors, loading());

  const [camsR, detR] = await Promise.allSettled([
    listCameras(signal),
    client(DetectionService).getDetectorStatus({}, { signal }),
  ]);
  if (signal.aborted) return;
  root.querySelector(".loading")?.remove();
  if (camsR.status === "rejected") {
    errors.append(errorBox(camsR.reason));
    pageReady("cameras");
    return;
  }
  const cams = camsR.value;
  const detectors = new Map<string, CameraDetectorStatus>();
  let provider = "";
  let model = "";
  if (detR.status === "fulfilled") {
    provider = detR.value.model?.executionProvider ?? "";
    model = detR.value.model?.name ?? "";
    for (const d of detR.value.cameras) if (d.camera) detectors.set(cameraKey(d.camera.site, d.camera.camera), d);
  } else if (!isAbort(detR.reason)) {
    errors.append(h("p", { class: "error", role: "alert" }, `${t("cameras.detector_error")}: ${errorText(detR.reason)}`));
  }

  const sites = [...new Set([...cams.map((c) => c.camera?.site ?? ""), ...principalSites()].filter(Boolean))].sort();
  const filter = h(
    "select",
    { id: "site-filter" },
    h("option", { value: "" }, t("cameras.all_sites")),
    sites.map((s) => h("option", { value: s }, s)),
  );
  const counter = h("span", { class: "muted", "aria-live": "polite" });
  const applyFilter = () => {
    let shown = 0;
    for (const card of grid.querySelectorAll<HTMLElement>(".camera-card")) {
      const visible = !filter.value || card.dataset.site === filter.value;
      card.hidden = !visible;
      if (visible) shown++;
    }
    counter.textContent = t("cameras.count", { n: shown });
  };
  filter.addEventListener("change", applyFilter);
  head.append(
    h("div", { class: "toolbar" },
      h("label", { for: "site-filter" }, t("cameras.site")), filter, counter,
      provider ? h("span", { class: "chip static", title: model }, `${t("cameras.detector")}: ${model} · ${provider}`) : null),
  );
  root.append(grid);

  const cards = new Map<string, Card>();
  const renderStatus = (card: Card, s: CameraStatus) => {
    const word = s.state === CameraState.RECORDING ? "recording" : enumWord(CameraState, s.state);
    card.el.dataset.state = word === "unspecified" ? "offline" : word;
    const site = s.camera?.site ?? "";
    const zone = siteZone(site);
    fill(
      card.status,
      h("span", { class: `badge state-${word}` }, enumLabel("camera_state", word)),
      h("span", { class: "muted" }, ` ${t("cameras.since")} ${fmtDateTime(ms(s.stateSince), zone)}`),
      s.state !== CameraState.RECORDING && s.lastError ? h("p", { class: "reason" }, s.lastError) : null,
      s.state === CameraState.RECORDING
        ? h("p", { class: "muted small" },
            [VideoCodec[s.codec] && s.codec ? VideoCodec[s.codec] : "", s.width ? `${s.width}×${s.height}` : "", s.fps ? `${s.fps.toFixed(1)} fps` : "", s.bitrateBps ? `${(Number(s.bitrateBps) / 1e6).toFixed(2)} Mbit/s` : ""].filter(Boolean).join(" · "))
        : null,
      s.spooledSegments > 0n ? h("p", { class: "warn-text small" }, t("cameras.spooled", { n: s.spooledSegments })) : null,
    );
  };
  const renderDetector = (card: Card, d: CameraDetectorStatus | undefined) => {
    if (!d) {
      fill(card.detector, h("span", { class: "muted" }, `${t("cameras.detector")}: —`));
      return;
    }
    const word = enumWord(DetectorState, d.state);
    fill(
      card.detector,
      `${t("cameras.detector")}: `,
      h("span", { class: `badge det-${word}` }, enumLabel("detector_state", word)),
      provider ? h("span", { class: "muted" }, ` · ${provider}`) : null,
      d.lastError ? h("span", { class: "reason small" }, ` ${d.lastError}`) : null,
    );
  };

  for (const s of cams) {
    const site = s.camera?.site ?? "";
    const name = s.camera?.camera ?? "";
    const card: Card = {
      el: h("article", { class: "camera-card card", role: "listitem", dataset: { site, camera: name, state: "" }, "aria-label": `${site}/${name}` }),
      status: h("div", { class: "status" }),
      detector: h("div", { class: "detector small" }),
      gaps: h("div", { class: "gaps small" }),
      thumb: h("div", { class: "thumb" }),
    };
    card.el.append(
      card.thumb,
      h("div", { class: "card-body" },
        h("h2", null, h("a", { class: "camera-open", href: cameraHref(site, name) }, name)),
        h("p", { class: "muted small" }, `${t("cameras.site")}: ${site} · ${siteZone(site)}`),
        card.status, card.detector, card.gaps),
    );
    renderStatus(card, s);
    renderDetector(card, detectors.get(cameraKey(site, name)));
    cards.set(cameraKey(site, name), card);
    grid.append(card.el);
  }
  if (cams.length === 0) grid.append(h("p", { class: "muted" }, t("cameras.none")));
  applyFilter();

  const loadFootage = async (audit: Audit | null) => {
    for (const card of cards.values()) {
      if (!audit) {
        fill(card.gaps, h("span", { class: "muted" }, `${t("cameras.gaps_today")}: —`));
        fill(card.thumb, h("button", { type: "button", class: "secondary thumb-reason", onclick: () => void askReason() }, t("cameras.reason_for_thumbs")));
      } else {
        fill(card.thumb, h("span", { class: "muted small" }, t("common.loading")));
      }
    }
    if (!audit) return;
    const storage = client(StorageService);
    const now = Date.now();
    await Promise.all(sites.filter((s) => cams.some((c) => c.camera?.site === s)).map(async (site) => {
      const zone = siteZone(site);
      const [start] = dayRange(dayOf(now, zone), zone);
      try {
        const gaps = new Map<string, { n: number; reasons: string[] }>();
        let pageToken = "";
        for (let i = 0; i < 10; i++) {
          const r = await storage.listRecordings(
            { scope: { case: "site", value: site }, range: { start: ts(start) }, audit: auditContext(audit), page: { pageSize: 1000, pageToken } },
            { signal },
          );
          for (const rr of r.ranges) {
            if (rr.kind !== RecordingRangeKind.GAP || !rr.camera) continue;
            const k = cameraKey(rr.camera.site, rr.camera.camera);
            const g = gaps.get(k) ?? { n: 0, reasons: [] };
            g.n++;
            g.reasons.push(enumLabel("gap_reason", enumWord(GapReason, rr.gapReason)) + (rr.gapDetail ? ` (${rr.gapDetail})` : ""));
            gaps.set(k, g);
          }
          pageToken = r.page?.nextPageToken ?? "";
          if (!pageToken) break;
        }
        for (const [k, card] of cards) {
          if (card.el.dataset.site !== site) continue;
          const g = gaps.get(k);
          fill(card.gaps, h("span", { title: g ? [...new Set(g.reasons)].join("\n") : "" }, `${t("cameras.gaps_today")}: ${g?.n ?? 0}`));
        }
      } catch (e) {
        if (isAbort(e)) return;
        for (const card of cards.values()) if (card.el.dataset.site === site) fill(card.gaps, errorBox(e));
      }
    }));
    // Latest still of each camera.
    for (const [, card] of cards) {
      if (signal.aborted) return;
      const site = card.el.dataset.site ?? "";
      const camera = { site, camera: card.el.dataset.camera ?? "" };
      const zone = siteZone(site);
      try {
        let shot = null;
        // The newest still of the last 10 minutes (a thumbnail, or a detection's snapshot when
        // transcode makes no thumbnails), else the newest thumbnail of today.
        const tries: [number, SnapshotKind][] = [
          [now - 10 * 60_000, SnapshotKind.UNSPECIFIED],
          [dayRange(dayOf(now, zone), zone)[0], SnapshotKind.THUMBNAIL],
        ];
        for (const [from, kind] of tries) {
          let pageToken = "";
          for (let i = 0; i < 5; i++) {
            const r = await storage.listSnapshots(
              { camera, range: { start: ts(from) }, kind, audit: auditContext(audit), page: { pageSize: 1000, pageToken } },
              { signal },
            );
            if (r.snapshots.length) shot = r.snapshots[r.snapshots.length - 1];
            pageToken = r.page?.nextPageToken ?? "";
            if (!pageToken) break;
          }
          if (shot) break;
        }
        if (shot?.media?.url) {
          fill(card.thumb, h("img", {
            src: shot.media.url,
            alt: t("cameras.thumb_alt", { camera: camera.camera, time: fmtDateTime(ms(shot.snapshot?.capturedAt), zone) }),
            loading: "lazy",
            width: 320,
            height: 180,
          }));
        } else {
          fill(card.thumb, h("span", { class: "muted small" }, t("cameras.no_thumb")));
        }
      } catch (e) {
        if (!isAbort(e)) fill(card.thumb, errorBox(e));
      }
    }
  };
  void loadFootage(currentAudit());
  const off = onAuditChange(() => void loadFootage(currentAudit()));
  signal.addEventListener("abort", off);
  pageReady("cameras");

  // Live state changes.
  void (async () => {
    let delay = 1000;
    while (!signal.aborted) {
      try {
        for await (const m of client(IngestService).watchCameraStatus({}, { signal })) {
          delay = 1000;
          const s = m.status;
          if (!s?.camera) continue;
          const card = cards.get(cameraKey(s.camera.site, s.camera.camera));
          if (card) renderStatus(card, s);
        }
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  })();
}
