// The access log: filtered table (who, camera, case, action, time) and chain verification with
// its signed checkpoint (kept in this browser to be checked again next time).
import { h, fill, hex } from "../dom";
import { t, enumLabel } from "../i18n";
import { client, ms, ts, errorText, isAbort } from "../api";
import { ensureAudit, auditContext, currentAudit } from "../reason";
import { fromJsonString, toJsonString } from "@bufbuild/protobuf";
import {
  StorageService,
  AccessAction,
  AccessObjectKind,
  AccessLogFindingKind,
  AccessLogCheckpointSchema,
  type AccessLogCheckpoint,
  type AccessLogEntry,
} from "../gen/kordon/storage/v1/storage_pb";
import { principalSites } from "../main";
import { enumWord, errorBox, listCameras, pageReady, type PageCtx } from "../ui";
import { fmtDateTime, parseLocal, siteZone } from "../time";

const CP_KEY = "kordon.checkpoint.";

export async function render({ root, signal }: PageCtx): Promise<void> {
  const storage = client(StorageService);
  let sites = principalSites();
  let cameraValues: string[] = [];
  try {
    const cams = await listCameras(signal);
    cameraValues = cams.filter((c) => c.camera).map((c) => `${c.camera!.site}/${c.camera!.camera}`).sort();
    sites = [...new Set([...sites, ...cams.map((c) => c.camera?.site ?? "")].filter(Boolean))].sort();
  } catch (e) {
    if (isAbort(e)) return;
    root.append(errorBox(e));
  }

  const site = h("select", { id: "audit-site", required: true }, sites.map((s) => h("option", { value: s }, s)));
  const who = h("input", { id: "audit-who", type: "text", autocomplete: "off", placeholder: t("audit.who_placeholder") });
  const camera = h("input", { id: "audit-camera", type: "text", autocomplete: "off", list: "audit-camera-list", placeholder: t("audit.camera_placeholder") });
  const cameraList = h("datalist", { id: "audit-camera-list" }, cameraValues.map((v) => h("option", { value: v })));
  const caseId = h("input", { id: "audit-case", type: "text", autocomplete: "off" });
  const actionNames = Object.keys(AccessAction).filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED");
  const action = h(
    "select",
    { id: "audit-action" },
    h("option", { value: "" }, t("audit.any_action")),
    actionNames.map((n) => h("option", { value: n.toLowerCase() }, enumLabel("access_action", n.toLowerCase()))),
  );
  const from = h("input", { id: "audit-from", type: "datetime-local", step: 1 });
  const to = h("input", { id: "audit-to", type: "datetime-local", step: 1 });
  const apply = h("button", { id: "audit-apply", type: "submit", class: "primary" }, t("audit.apply"));
  const verify = h("button", { id: "audit-verify", type: "button", class: "secondary" }, t("audit.verify"));
  const verifyResult = h("div", { id: "audit-verify-result", "aria-live": "polite" });
  const errors = h("div", { class: "errors", "aria-live": "polite" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true, id: "audit-more" }, t("audit.more"));
  const count = h("p", { class: "muted small", "aria-live": "polite" });
  const zoneNote = h("p", { class: "muted small" });

  const form = h(
    "form",
    { class: "card filters", "aria-label": t("audit.filters") },
    h("div", { class: "filter-grid" },
      h("div", { class: "field" }, h("label", { for: "audit-site" }, t("audit.site")), site),
      h("div", { class: "field" }, h("label", { for: "audit-who" }, t("audit.who")), who),
      h("div", { class: "field" }, h("label", { for: "audit-camera" }, t("audit.camera")), camera, cameraList),
      h("div", { class: "field" }, h("label", { for: "audit-case" }, t("audit.case")), caseId),
      h("div", { class: "field" }, h("label", { for: "audit-action" }, t("audit.action")), action),
      h("div", { class: "field" }, h("label", { for: "audit-from" }, t("audit.from")), from),
      h("div", { class: "field" }, h("label", { for: "audit-to" }, t("audit.to")), to),
    ),
    zoneNote,
    h("div", { class: "actions" }, apply),
  );
  root.append(
    h("div", { class: "page-head" }, h("h1", null, t("audit.title")), h("p", { class: "muted" }, t("audit.explain"))),
    form,
    h("section", { class: "card verify", "aria-labelledby": "verify-title" },
      h("h2", { id: "verify-title" }, t("audit.verify_title")),
      h("p", { class: "muted small" }, t("audit.verify_explain")),
      verify,
      verifyResult,
    ),
    errors,
    count,
    h("div", { class: "table-wrap" },
      h("table", { class: "audit" },
        h("caption", { class: "sr-only" }, t("audit.title")),
        h("thead", null, h("tr", null,
          h("th", { scope: "col" }, "#"),
          h("th", { scope: "col" }, t("audit.time")),
          h("th", { scope: "col" }, t("audit.who")),
          h("th", { scope: "col" }, t("audit.action")),
          h("th", { scope: "col" }, t("audit.objects")),
          h("th", { scope: "col" }, t("audit.reason_case")),
          h("th", { scope: "col" }, t("audit.method")),
        )),
        tbody,
      ),
    ),
    more,
  );
  const updateZone = () => (zoneNote.textContent = t("common.times_in", { zone: siteZone(site.value) }));
  site.addEventListener("change", updateZone);
  updateZone();

  const row = (e: AccessLogEntry) => {
    const zone = siteZone(e.site || site.value);
    const act = enumWord(AccessAction, e.action);
    return h(
      "tr",
      { class: "audit-row", dataset: { action: act, sequence: String(e.sequence) } },
      h("td", null, String(e.sequence)),
      h("td", null, fmtDateTime(ms(e.time), zone)),
      h("td", null, e.principalName || e.principal, e.principalName ? h("div", { class: "muted small" }, e.principal) : null,
        e.viaService ? h("div", { class: "muted small" }, `${t("audit.via")} ${e.viaService}`) : null,
        e.source ? h("div", { class: "partner small" }, `${t("audit.source")} ${e.source}`) : null),
      h("td", null, h("span", { class: "badge" }, enumLabel("access_action", act))),
      h("td", null, e.objects.map((o) => {
        const kind = enumWord(AccessObjectKind, o.kind);
        const cam = o.camera ? `${o.camera.site}/${o.camera.camera}` : "";
        const range = o.range ? `${fmtDateTime(ms(o.range.start), zone)} – ${o.range.end ? fmtDateTime(ms(o.range.end), zone) : "…"}` : "";
        return h("div", { class: "small" }, [kind, cam, o.id, range].filter(Boolean).join(" · "));
      })),
      h("td", null, e.reason, e.caseId ? h("div", { class: "muted small" }, `${t("audit.case")}: ${e.caseId}`) : null,
        e.recipient ? h("div", { class: "muted small" }, `${t("audit.recipient")}: ${e.recipient}`) : null),
      h("td", { class: "small mono" }, e.method),
    );
  };

  let nextToken = "";
  let shown = 0;
  async function load(append: boolean) {
    errors.replaceChildren();
    const audit = await ensureAudit();
    if (!audit) {
      errors.replaceChildren(h("p", { class: "error", role: "alert" }, t("audit.need_reason")));
      return;
    }
    const zone = siteZone(site.value);
    const cam = camera.value.trim();
    const [cs, ...cn] = cam.includes("/") ? cam.split("/") : [site.value, cam];
    const a = parseLocal(from.value, zone);
    const b = parseLocal(to.value, zone);
    const act = action.value ? (AccessAction as unknown as Record<string, number>)[action.value.toUpperCase()] : undefined;
    apply.disabled = true;
    try {
      const r = await storage.listAccessLog(
        {
          site: site.value,
          principal: who.value.trim(),
          actions: act !== undefined ? [act] : [],
          camera: cam ? { site: cs, camera: cn.join("/") } : undefined,
          caseId: caseId.value.trim(),
          range: a !== undefined || b !== undefined ? { start: a !== undefined ? ts(a) : undefined, end: b !== undefined ? ts(b) : undefined } : undefined,
          audit: auditContext(audit),
          page: { pageSize: 200, pageToken: append ? nextToken : "" },
        },
        { signal },
      );
      if (!append) {
        tbody.replaceChildren();
        shown = 0;
      }
      for (const e of r.entries) tbody.append(row(e));
      shown += r.entries.length;
      nextToken = r.page?.nextPageToken ?? "";
      more.hidden = !nextToken;
      count.textContent = t("audit.count", { n: shown });
    } catch (e) {
      if (!isAbort(e)) errors.replaceChildren(errorBox(e));
    } finally {
      apply.disabled = false;
      pageReady("audit");
    }
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void load(false);
  });
  more.addEventListener("click", () => void load(true));

  verify.addEventListener("click", async () => {
    verify.disabled = true;
    fill(verifyResult, h("p", { class: "muted" }, t("common.loading")));
    const s = site.value;
    let previous: AccessLogCheckpoint | undefined;
    try {
      const saved = localStorage.getItem(CP_KEY + s);
      if (saved) previous = fromJsonString(AccessLogCheckpointSchema, saved);
    } catch {
      previous = undefined;
    }
    try {
      const r = await storage.verifyAccessLog({ site: s, checkpoint: previous }, { signal });
      const zone = siteZone(s);
      const head = r.head;
      if (head && r.intact) localStorage.setItem(CP_KEY + s, toJsonString(AccessLogCheckpointSchema, head));
      fill(
        verifyResult,
        h("p", { class: r.intact ? "ok-text result-line" : "error result-line", role: r.intact ? "status" : "alert", dataset: { intact: String(r.intact) } },
          r.intact ? t("audit.intact") : t("audit.not_intact", { n: r.findings.length })),
        h("p", { class: "small" }, t("audit.checked", { n: r.entriesChecked, first: r.firstSequence, last: r.lastSequence })),
        previous ? h("p", { class: "small muted" }, t("audit.prev_checkpoint", { seq: previous.sequence })) : null,
        r.findings.length
          ? h("ul", { class: "findings" }, r.findings.map((f) => h("li", null, `#${f.sequence} ${enumWord(AccessLogFindingKind, f.kind)}: ${f.detail}`)))
          : null,
        head
          ? h("dl", { class: "facts checkpoint" },
              h("dt", null, t("audit.cp_site")), h("dd", null, head.site),
              h("dt", null, t("audit.cp_sequence")), h("dd", null, String(head.sequence)),
              h("dt", null, t("audit.cp_time")), h("dd", null, fmtDateTime(ms(head.time), zone)),
              h("dt", null, t("audit.cp_hash")), h("dd", null, h("code", { class: "hash" }, hex(head.hash))),
              h("dt", null, t("audit.cp_signature")), h("dd", null, h("code", { class: "hash" }, hex(head.signature))),
              h("dt", null, t("audit.cp_key")), h("dd", null, h("code", { class: "hash" }, hex(head.signingPublicKey))),
            )
          : null,
        head
          ? h("a", {
              class: "button secondary small",
              download: `access-log-checkpoint-${head.site}-${head.sequence}.json`,
              href: `data:application/json;charset=utf-8,${encodeURIComponent(toJsonString(AccessLogCheckpointSchema, head, { prettySpaces: 2 }))}`,
            }, t("audit.cp_download"))
          : null,
      );
    } catch (e) {
      if (!isAbort(e)) fill(verifyResult, h("p", { class: "error", role: "alert" }, errorText(e)));
    } finally {
      verify.disabled = false;
    }
  });

  if (sites.length === 0) errors.append(h("p", { class: "muted" }, t("audit.no_sites")));
  else if (currentAudit()) await load(false);
  pageReady("audit");
}
