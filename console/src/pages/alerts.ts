// The alert inbox, live from WatchAlerts (resumed with the last cursor after a disconnect):
// acknowledge, hold or resolve with a note; snapshot; link to the camera at that moment.
import { h, fill } from "../dom";
import { t, enumLabel } from "../i18n";
import { client, ms, ts, errorText, isAbort, codeOf } from "../api";
import { Code } from "@connectrpc/connect";
import { currentAudit, askReason, auditContext, onAuditChange } from "../reason";
import {
  AlertingService,
  AlertEventKind,
  AlertResolution,
  AlertSeverity,
  AlertState,
  FootageSharing,
  type Alert,
} from "../gen/kordon/alerting/v1/alerting_pb";
import { DetectionService } from "../gen/kordon/detection/v1/detection_pb";
import type { BoundingBox } from "../gen/kordon/common/v1/common_pb";
import { cameraHref, enumWord, errorBox, pageReady, type PageCtx } from "../ui";
import { fmtDateTime, siteZone } from "../time";

export async function render({ root, signal }: PageCtx): Promise<void> {
  const alerting = client(AlertingService);
  const alerts = new Map<string, Alert>();
  const rows = new Map<string, HTMLElement>();
  const snapshots = new Map<string, { url: string; boxes: BoundingBox[]; at: number } | Error>(); // snapshot id -> image or error
  // What an officer has typed or chosen in a row, by alert id. A live alert's row is redrawn on
  // every update (a new occurrence, an escalation), which must not wipe a note being written.
  const drafts = new Map<string, { note: string; resolution: string }>();
  const stepErrors = new Map<string, unknown>(); // the last failed step's error, by alert id, kept across redraws

  const liveState = h("span", { class: "chip static live-state", role: "status" }, t("alerts.connecting"));
  const showResolved = h("input", { id: "alerts-show-resolved", type: "checkbox" });
  const errors = h("div", { class: "errors", "aria-live": "polite" });
  const tbody = h("tbody");
  const empty = h("p", { class: "muted", hidden: true }, t("alerts.none"));
  root.append(
    h("div", { class: "page-head" },
      h("h1", null, t("alerts.title")),
      h("div", { class: "toolbar" },
        liveState,
        h("label", { class: "check" }, showResolved, ` ${t("alerts.show_resolved")}`),
      ),
    ),
    errors,
    h("div", { class: "table-wrap" },
      h("table", { class: "alerts" },
        h("caption", { class: "sr-only" }, t("alerts.title")),
        h("thead", null, h("tr", null,
          h("th", { scope: "col" }, t("alerts.snapshot")),
          h("th", { scope: "col" }, t("alerts.alert")),
          h("th", { scope: "col" }, t("alerts.camera")),
          h("th", { scope: "col" }, t("alerts.time")),
          h("th", { scope: "col" }, t("alerts.state")),
          h("th", { scope: "col" }, t("alerts.actions")),
        )),
        tbody,
      ),
    ),
    empty,
  );

  const show = (e: unknown) => {
    if (!isAbort(e)) errors.replaceChildren(errorBox(e));
  };

  async function loadSnapshot(a: Alert, cell: HTMLElement) {
    const audit = currentAudit();
    if (!a.snapshotId) {
      fill(cell, h("span", { class: "muted small" }, t("alerts.no_snapshot")));
      return;
    }
    if (!audit) {
      fill(cell, h("button", { type: "button", class: "secondary small", onclick: () => void askReason() }, t("alerts.reason_for_snapshot")));
      return;
    }
    let v = snapshots.get(a.snapshotId);
    if (v === undefined) {
      fill(cell, h("span", { class: "muted small" }, "…"));
      try {
        v = await snapshotWithBoxes(a.snapshotId, audit);
      } catch (e) {
        if (isAbort(e)) return;
        v = new Error(errorText(e));
      }
      // A live alert's snapshot can come before its detection is stored: without a box yet,
      // ask again shortly rather than keep the image without one.
      if (!(v instanceof Error) && v.boxes.length === 0 && Date.now() - v.at < 60_000) {
        const retry = v;
        setTimeout(() => {
          URL.revokeObjectURL(retry.url);
          if (!signal.aborted && cell.isConnected) void loadSnapshot(a, cell);
        }, 3000);
      } else {
        snapshots.set(a.snapshotId, v);
      }
    }
    if (v instanceof Error) fill(cell, h("span", { class: "error small", title: v.message }, v.message));
    else
      fill(
        cell,
        h(
          "div",
          { class: "snapshot" },
          h("img", { src: v.url, alt: t("alerts.snapshot_alt", { camera: a.camera?.camera ?? "" }), width: 160, height: 90 }),
          ...v.boxes.map((b) => {
            const box = h("div", { class: "snapshot-box", "aria-hidden": "true" });
            box.style.left = `${b.left * 100}%`;
            box.style.top = `${b.top * 100}%`;
            box.style.width = `${(b.right - b.left) * 100}%`;
            box.style.height = `${(b.bottom - b.top) * 100}%`;
            return box;
          }),
        ),
      );
  }

  /** The alert's snapshot as detection stores it (a footage read, logged under the reason),
   *  with the boxes of the objects it was taken for (from the detections of that frame). */
  async function snapshotWithBoxes(id: string, audit: NonNullable<ReturnType<typeof currentAudit>>): Promise<{ url: string; boxes: BoundingBox[]; at: number }> {
    const detection = client(DetectionService);
    const s = await detection.getSnapshot({ snapshotId: id, audit: auditContext(audit) }, { signal });
    const url = URL.createObjectURL(new Blob([s.image as BlobPart], { type: s.contentType || "image/jpeg" }));
    signal.addEventListener("abort", () => URL.revokeObjectURL(url));
    let boxes: BoundingBox[] = [];
    const at = ms(s.capturedAt);
    if (at !== undefined && s.camera) {
      const list = await detection.listDetections(
        { cameras: [s.camera], range: { start: ts(at - 1000), end: ts(at + 1000) }, page: { pageSize: 1000, pageToken: "" } },
        { signal },
      );
      boxes = list.detections
        .filter((d) => d.id === s.detectionId || (d.snapshotId === id && ms(d.time) === at))
        .flatMap((d) => (d.box ? [d.box] : []));
    }
    return { url, boxes, at: at ?? 0 };
  }

  function renderRow(a: Alert): HTMLElement {
    const zone = siteZone(a.camera?.site || a.site);
    const state = enumWord(AlertState, a.state);
    const sev = enumWord(AlertSeverity, a.severity);
    const note = h("input", { class: "alert-note", type: "text", "aria-label": t("alerts.note"), placeholder: t("alerts.note") });
    const resolution = h(
      "select",
      { class: "alert-resolution", "aria-label": t("alerts.resolution") },
      [AlertResolution.ACTIONED, AlertResolution.FALSE_ALARM, AlertResolution.DUPLICATE].map((r) =>
        h("option", { value: String(r) }, enumLabel("resolution", enumWord(AlertResolution, r))),
      ),
    );
    const draft = drafts.get(a.id);
    if (draft) {
      note.value = draft.note;
      resolution.value = draft.resolution;
    }
    const keep = () => drafts.set(a.id, { note: note.value, resolution: resolution.value });
    note.addEventListener("input", keep);
    resolution.addEventListener("change", keep);
    const rowErr = h("div", { class: "row-error", "aria-live": "polite" });
    if (stepErrors.has(a.id)) rowErr.append(errorBox(stepErrors.get(a.id)));
    const resolved = a.state === AlertState.RESOLVED;
    const act = async (kind: "ack" | "hold" | "resolve", btn: HTMLButtonElement) => {
      btn.disabled = true;
      rowErr.replaceChildren();
      stepErrors.delete(a.id);
      try {
        const send = (expectedVersion: bigint) => {
          const base = { alertId: a.id, note: note.value.trim(), expectedVersion };
          return kind === "ack"
            ? alerting.acknowledgeAlert(base, { signal })
            : kind === "hold"
              ? alerting.holdAlert(base, { signal })
              : alerting.resolveAlert({ ...base, resolution: Number(resolution.value) as AlertResolution }, { signal });
        };
        // The version this page last saw (the row may be older than the newest update).
        const seen = alerts.get(a.id) ?? a;
        let r;
        try {
          r = await send(seen.version);
        } catch (e) {
          // A live alert gains occurrences while the officer types. Only its state matters to
          // the step: when that is still what the officer saw, step on the newer version;
          // otherwise (someone else acted) show the alert as it is now, with the error.
          if (codeOf(e) !== Code.Aborted) throw e;
          const now = (await alerting.getAlert({ alertId: a.id }, { signal })).alert;
          if (!now || now.state !== seen.state) {
            if (now) upsert(now);
            throw e;
          }
          r = await send(now.version);
        }
        drafts.delete(a.id);
        if (r.alert) upsert(r.alert);
      } catch (e) {
        if (isAbort(e)) return;
        stepErrors.set(a.id, e);
        // The row on the page now (it may have been redrawn while the step ran).
        const shown = rows.get(a.id) ?? null;
        (shown?.querySelector(".row-error") ?? rowErr).replaceChildren(errorBox(e));
        btn.disabled = false;
      }
    };
    const snapCell = h("td", { class: "snap" });
    const at = ms(a.openedAt);
    const origin = a.origin;
    const lifecycle: string[] = [];
    if (a.acknowledgedBy) lifecycle.push(`${t("alerts.acked_by")} ${a.acknowledgedBy} ${fmtDateTime(ms(a.acknowledgedAt), zone)}${a.acknowledgeNote ? ` — ${a.acknowledgeNote}` : ""}`);
    if (a.heldBy) lifecycle.push(`${t("alerts.held_by")} ${a.heldBy} ${fmtDateTime(ms(a.heldAt), zone)}${a.holdNote ? ` — ${a.holdNote}` : ""}`);
    if (a.resolvedBy) lifecycle.push(`${t("alerts.resolved_by")} ${a.resolvedBy} ${fmtDateTime(ms(a.resolvedAt), zone)} (${enumLabel("resolution", enumWord(AlertResolution, a.resolution))})${a.resolveNote ? ` — ${a.resolveNote}` : ""}`);

    const ackBtn = h("button", { type: "button", class: "alert-ack secondary small", disabled: resolved || a.state === AlertState.ACKNOWLEDGED }, t("alerts.ack"));
    const holdBtn = h("button", { type: "button", class: "alert-hold secondary small", disabled: resolved || a.state === AlertState.ON_HOLD }, t("alerts.hold"));
    const resolveBtn = h("button", { type: "button", class: "alert-resolve primary small", disabled: resolved }, t("alerts.resolve"));
    ackBtn.addEventListener("click", () => void act("ack", ackBtn));
    holdBtn.addEventListener("click", () => void act("hold", holdBtn));
    resolveBtn.addEventListener("click", () => void act("resolve", resolveBtn));

    const row = h(
      "tr",
      { class: "alert-row", dataset: { id: a.id, state, severity: sev } },
      snapCell,
      h("td", null,
        h("span", { class: `badge sev-${sev}` }, enumLabel("severity", sev)),
        " ",
        h("strong", null, a.ruleName || a.ruleId),
        h("div", { class: "muted small" }, [a.classLabel, a.zone ? `${t("alerts.zone")} ${a.zone}` : "", a.line ? `${t("alerts.line")} ${a.line}` : "", `${Math.round(a.maxConfidence * 100)} %`, a.occurrences > 1 ? t("alerts.occurrences", { n: a.occurrences }) : ""].filter(Boolean).join(" · ")),
        origin
          ? h("div", { class: "partner small" }, t("alerts.partner", { site: origin.site, sharing: enumLabel("sharing", enumWord(FootageSharing, origin.footage)) }))
          : null,
      ),
      h("td", null,
        a.camera ? h("a", { href: cameraHref(a.camera.site, a.camera.camera, at) , title: t("alerts.open_camera") }, `${a.camera.site}/${a.camera.camera}`) : "—",
      ),
      h("td", null, fmtDateTime(at, zone), a.lastSeenAt && ms(a.lastSeenAt) !== at ? h("div", { class: "muted small" }, `${t("alerts.last_seen")} ${fmtDateTime(ms(a.lastSeenAt), zone)}`) : null),
      h("td", null,
        h("span", { class: `badge st-${state}` }, enumLabel("alert_state", state)),
        lifecycle.map((l) => h("div", { class: "muted small" }, l)),
      ),
      h("td", { class: "actions-cell" },
        resolved ? null : h("div", { class: "act-inputs" }, note, resolution),
        resolved ? null : h("div", { class: "button-row" }, ackBtn, holdBtn, resolveBtn),
        rowErr,
      ),
    );
    void loadSnapshot(a, snapCell);
    return row;
  }

  function sorted(): Alert[] {
    return [...alerts.values()].sort((x, y) => (ms(y.openedAt) ?? 0) - (ms(x.openedAt) ?? 0));
  }

  function upsert(a: Alert) {
    const old = alerts.get(a.id);
    if (old && old.version > a.version) return;
    alerts.set(a.id, a);
    const row = renderRow(a);
    const prev = rows.get(a.id);
    rows.set(a.id, row);
    if (prev) {
      // Keep the keyboard where it was: the same control in the redrawn row, caret included.
      const focused = document.activeElement;
      const cls = focused instanceof HTMLElement && prev.contains(focused) ? focused.classList[0] : undefined;
      prev.replaceWith(row);
      const again = cls ? row.querySelector<HTMLElement>(`.${cls}`) : null;
      if (again && !(again as HTMLButtonElement).disabled) {
        again.focus();
        if (focused instanceof HTMLInputElement && again instanceof HTMLInputElement) {
          again.setSelectionRange(focused.selectionStart, focused.selectionEnd);
        }
      }
    }
    else {
      // Keep newest first.
      const list = sorted();
      const i = list.findIndex((x) => x.id === a.id);
      const after = list.slice(i + 1).map((x) => rows.get(x.id)).find((r) => r?.isConnected);
      if (after) tbody.insertBefore(row, after);
      else tbody.append(row);
    }
    applyFilter();
  }

  function applyFilter() {
    let shown = 0;
    for (const [id, row] of rows) {
      const a = alerts.get(id);
      const hide = !showResolved.checked && a?.state === AlertState.RESOLVED;
      row.hidden = hide;
      if (!hide) shown++;
    }
    empty.hidden = shown > 0;
  }
  showResolved.addEventListener("change", applyFilter);

  const off = onAuditChange(() => {
    for (const [id, row] of rows) {
      const a = alerts.get(id);
      const cell = row.querySelector<HTMLElement>("td.snap");
      if (a && cell) void loadSnapshot(a, cell);
    }
  });
  signal.addEventListener("abort", off);

  // Recent alerts (resolved ones too), newest first.
  let listedAt = Date.now();
  try {
    const r = await alerting.listAlerts({ range: { start: ts(Date.now() - 7 * 86_400_000) }, page: { pageSize: 200 } }, { signal });
    listedAt = Date.now();
    for (const a of r.alerts) upsert(a);
  } catch (e) {
    show(e);
  }
  applyFilter();
  if (signal.aborted) return;
  pageReady("alerts");

  // Live: the unresolved alerts and events since the list, then on; resume with the cursor.
  let cursor = "";
  let delay = 1000;
  while (!signal.aborted) {
    try {
      liveState.textContent = t("alerts.connecting");
      liveState.className = "chip static live-state";
      const req = cursor
        ? { cursor }
        : { includeUnresolved: true, since: ts(listedAt - 5000) };
      for await (const ev of alerting.watchAlerts(req, { signal })) {
        if (liveState.dataset.live !== "1") {
          liveState.textContent = t("alerts.live");
          liveState.className = "chip static live-state ok";
          liveState.dataset.live = "1";
          errors.replaceChildren();
        }
        delay = 1000;
        if (ev.cursor) cursor = ev.cursor;
        if (ev.alert) upsert(ev.alert);
        if (ev.kind === AlertEventKind.OPENED && ev.alert) rows.get(ev.alert.id)?.classList.add("fresh");
      }
      // The server ended the stream: resume.
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      if (codeOf(e) === Code.OutOfRange) {
        // The cursor expired: start again from the unresolved alerts.
        cursor = "";
        listedAt = Date.now() - 60_000;
      }
      show(e);
    }
    delete liveState.dataset.live;
    liveState.textContent = t("alerts.reconnecting", { s: Math.round(delay / 1000) });
    liveState.className = "chip static live-state warn";
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 30_000);
  }
}
