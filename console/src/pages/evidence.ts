// Evidence export: cameras (of one site) × time range, case and reason -> ExportEvidence with
// progress -> the bundle's download link (GetEvidenceBundle).
import { h, fill, hex } from "../dom";
import { t, enumLabel } from "../i18n";
import { client, ms, ts, dur, errorText, isAbort } from "../api";
import { currentAudit, setAudit, ensureAudit, auditContext } from "../reason";
import { StorageService, EvidenceBundleState, BundleVerdict, type EvidenceBundle } from "../gen/kordon/storage/v1/storage_pb";
import { readBundle, MAX_MANIFEST } from "../bundle";
import { errorBox, listCameras, pageReady, fmtBytes, enumWord, type PageCtx } from "../ui";
import { fmtDateTime, parseLocal, siteZone, toLocalInput } from "../time";

export async function render({ root, signal }: PageCtx): Promise<void> {
  const storage = client(StorageService);
  const audit = currentAudit();
  const camerasBox = h("fieldset", { id: "export-cameras", class: "camera-checks" }, h("legend", null, t("evidence.cameras")));
  const from = h("input", { id: "export-from", type: "datetime-local", required: true, step: 1 });
  const to = h("input", { id: "export-to", type: "datetime-local", required: true, step: 1 });
  const caseId = h("input", { id: "export-case", type: "text", required: true, autocomplete: "off", value: audit?.caseId ?? "" });
  const reason = h("input", { id: "export-reason", type: "text", required: true, autocomplete: "off", value: audit?.reason ?? "" });
  const recipient = h("input", { id: "export-recipient", type: "text", autocomplete: "off" });
  const description = h("input", { id: "export-description", type: "text", autocomplete: "off" });
  const submit = h("button", { id: "export-submit", type: "submit", class: "primary" }, t("evidence.submit"));
  const zoneNote = h("p", { class: "muted small", "aria-live": "polite" });
  const progress = h("progress", { id: "export-progress", max: 1, value: 0, hidden: true, "aria-label": t("evidence.progress") });
  const stage = h("p", { class: "muted small", "aria-live": "polite" });
  const error = h("div", { id: "export-error", "aria-live": "assertive" });
  const result = h("div", { class: "result" });

  const form = h(
    "form",
    { class: "card export-form", "aria-labelledby": "ev-title" },
    camerasBox,
    h("div", { class: "grid2" },
      h("div", { class: "field" }, h("label", { for: "export-from" }, t("evidence.from")), from),
      h("div", { class: "field" }, h("label", { for: "export-to" }, t("evidence.to")), to),
    ),
    zoneNote,
    h("div", { class: "grid2" },
      h("div", { class: "field" }, h("label", { for: "export-case" }, t("evidence.case")), caseId),
      h("div", { class: "field" }, h("label", { for: "export-reason" }, t("evidence.reason")), reason),
      h("div", { class: "field" }, h("label", { for: "export-recipient" }, t("evidence.recipient")), recipient),
      h("div", { class: "field" }, h("label", { for: "export-description" }, t("evidence.description")), description),
    ),
    h("div", { class: "actions" }, submit),
    progress,
    stage,
    error,
    result,
  );
  root.append(h("div", { class: "page-head" }, h("h1", { id: "ev-title" }, t("evidence.title")), h("p", { class: "muted" }, t("evidence.explain"))), form);
  const earlier = h("section", { class: "card", "aria-labelledby": "bundles-title" });
  root.append(earlier, verifySection(storage, signal));
  let reloadBundles = () => {};

  const selectedSite = () => camerasBox.querySelector<HTMLInputElement>("input:checked")?.value.split("/")[0] ?? "";
  const zone = () => siteZone(selectedSite() || camerasBox.querySelector<HTMLInputElement>("input")?.value.split("/")[0] || "");
  const updateZone = () => {
    zoneNote.textContent = t("evidence.zone_note", { zone: zone() });
    // Cameras of one site per bundle: disable the other sites' boxes.
    const site = selectedSite();
    for (const box of camerasBox.querySelectorAll<HTMLInputElement>("input[type=checkbox]")) {
      box.disabled = !!site && box.value.split("/")[0] !== site;
    }
  };

  try {
    const cams = await listCameras(signal);
    const bySite = new Map<string, string[]>();
    for (const c of cams) if (c.camera) bySite.set(c.camera.site, [...(bySite.get(c.camera.site) ?? []), c.camera.camera]);
    for (const [site, names] of [...bySite].sort()) {
      camerasBox.append(
        h("div", { class: "site-group" },
          h("p", { class: "site-name" }, site),
          names.sort().map((n) => {
            const id = `exp-${site}-${n}`.replace(/[^A-Za-z0-9_-]/g, "_");
            return h("label", { class: "check", for: id }, h("input", { type: "checkbox", id, name: "camera", value: `${site}/${n}`, onchange: updateZone }), ` ${n}`);
          }),
        ),
      );
    }
    if (cams.length === 0) camerasBox.append(h("p", { class: "muted" }, t("cameras.none")));
    reloadBundles = bundlesSection(earlier, storage, [...bySite.keys()].sort(), signal);
  } catch (e) {
    if (isAbort(e)) return;
    camerasBox.append(errorBox(e));
  }
  const now = Date.now();
  to.value = toLocalInput(now, zone());
  from.value = toLocalInput(now - 15 * 60_000, zone());
  updateZone();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.replaceChildren();
    result.replaceChildren();
    const cameras = [...camerasBox.querySelectorAll<HTMLInputElement>("input:checked")].map((b) => {
      const [site, ...rest] = b.value.split("/");
      return { site, camera: rest.join("/") };
    });
    const z = zone();
    const a = parseLocal(from.value, z);
    const b = parseLocal(to.value, z);
    const problems: string[] = [];
    if (cameras.length === 0) problems.push(t("evidence.need_camera"));
    if (a === undefined || b === undefined || b <= a) problems.push(t("evidence.need_range"));
    if (!caseId.value.trim()) problems.push(t("evidence.need_case"));
    if (!reason.value.trim()) problems.push(t("evidence.need_reason"));
    if (problems.length) {
      error.replaceChildren(h("p", { class: "error", role: "alert" }, problems.join(" ")));
      return;
    }
    const ctx = { reason: reason.value.trim(), caseId: caseId.value.trim(), recipient: recipient.value.trim() };
    // The reason given here is the session's reason from now on.
    setAudit({ reason: ctx.reason, caseId: ctx.caseId });
    submit.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    progress.removeAttribute("value");
    stage.textContent = t("evidence.starting");
    let bundleId = "";
    let ready: EvidenceBundle | undefined;
    try {
      const stream = storage.exportEvidence(
        { cameras, range: { start: ts(a!), end: ts(b!) }, audit: ctx, description: description.value.trim(), requestId: crypto.randomUUID() },
        { signal },
      );
      for await (const m of stream) {
        bundleId = m.bundleId || bundleId;
        if (m.event.case === "progress") {
          const p = m.event.value;
          if (p.totalUnits > 0n) progress.value = p.fraction;
          stage.textContent = `${p.stage || t("evidence.working")}${p.totalUnits > 0n ? ` — ${p.doneUnits}/${p.totalUnits}` : ""} (${t("evidence.bundle")} ${bundleId})`;
        } else if (m.event.case === "bundle") {
          ready = m.event.value;
        }
      }
      // The stream ended early (e.g. a proxy closed it): the build goes on; wait for it.
      for (let i = 0; !ready && bundleId && i < 600 && !signal.aborted; i++) {
        const r = await storage.getEvidenceBundle({ bundleId, audit: ctx }, { signal });
        if (r.bundle?.state === EvidenceBundleState.READY) ready = r.bundle;
        else if (r.bundle?.state === EvidenceBundleState.FAILED) throw new Error(r.bundle.error || t("evidence.failed"));
        else await new Promise((res) => setTimeout(res, 2000));
      }
      if (!ready) throw new Error(t("evidence.failed"));
      progress.value = 1;
      stage.textContent = t("evidence.ready");
      reloadBundles();
      const r = await storage.getEvidenceBundle({ bundleId: ready.id || bundleId, audit: ctx, urlTtl: dur(3600) }, { signal });
      const bundle = r.bundle ?? ready;
      const url = r.download?.url;
      const zz = siteZone(cameras[0].site);
      fill(
        result,
        url
          ? h("p", null, h("a", { id: "export-download", class: "button primary", href: url, download: `evidence-${bundle.id}.tar`, rel: "noopener" }, t("evidence.download")),
              h("span", { class: "muted small" }, ` ${t("evidence.expires", { time: fmtDateTime(ms(r.download?.expiresAt), zz) })}`))
          : h("p", { class: "error", role: "alert" }, t("evidence.no_url")),
        h("dl", { class: "facts" },
          h("dt", null, t("evidence.bundle")), h("dd", null, h("code", null, bundle.id)),
          h("dt", null, t("evidence.contents")), h("dd", null, t("evidence.counts", { segments: bundle.segmentCount, gaps: bundle.gapCount, size: fmtBytes(bundle.sizeBytes) })),
          h("dt", null, "SHA-256"), h("dd", null, h("code", { class: "hash" }, hex(bundle.sha256))),
          h("dt", null, t("evidence.manifest_sha")), h("dd", null, h("code", { class: "hash" }, hex(bundle.manifestSha256))),
          h("dt", null, t("evidence.signature")), h("dd", null, h("code", { class: "hash" }, hex(bundle.manifestSignature))),
          h("dt", null, t("evidence.public_key")), h("dd", null, h("code", { class: "hash" }, hex(bundle.signingPublicKey))),
        ),
      );
    } catch (e) {
      if (!isAbort(e)) {
        error.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(e)));
        stage.textContent = "";
        progress.hidden = true;
      }
    } finally {
      submit.disabled = false;
    }
  });
  pageReady("evidence");
}

/** Verify a bundle someone holds: read in the browser (manifest, signature, each file's
 *  SHA-256), checked by storage (VerifyEvidenceBundle) against the keys this site trusts. */
function verifySection(storage: ReturnType<typeof client<typeof StorageService>>, signal: AbortSignal): HTMLElement {
  const file = h("input", { id: "verify-file", type: "file", accept: ".tar,application/x-tar" });
  const submit = h("button", { id: "verify-submit", type: "submit", class: "primary" }, t("evidence.verify_submit"));
  const progress = h("progress", { id: "verify-progress", max: 1, value: 0, hidden: true, "aria-label": t("evidence.verify_progress") });
  const stage = h("p", { class: "muted small", "aria-live": "polite" });
  const result = h("div", { id: "verify-result", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card export-form", "aria-labelledby": "verify-title" },
    h("h2", { id: "verify-title" }, t("evidence.verify_title")),
    h("p", { class: "muted small" }, t("evidence.verify_explain")),
    h("div", { class: "field" }, h("label", { for: "verify-file" }, t("evidence.verify_file")), file),
    h("div", { class: "actions" }, submit),
    progress,
    stage,
    result,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = file.files?.[0];
    result.replaceChildren();
    delete result.dataset.verdict;
    if (!f) {
      result.append(h("p", { class: "error", role: "alert" }, t("evidence.verify_need_file")));
      return;
    }
    submit.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    try {
      stage.textContent = t("evidence.verify_reading");
      const parts = await readBundle(f, (done) => (progress.value = f.size ? done / f.size : 1), signal);
      if (parts.manifest.length > MAX_MANIFEST) throw new Error(t("evidence.verify_manifest_too_big"));
      stage.textContent = t("evidence.verify_checking");
      const r = await storage.verifyEvidenceBundle({ manifest: parts.manifest, signature: parts.signature, files: parts.files }, { signal });
      const problems = [...parts.problems, ...r.problems];
      const verdict = problems.length ? BundleVerdict.NOT_INTACT : r.verdict;
      const word = verdict === BundleVerdict.INTACT ? "intact" : verdict === BundleVerdict.UNKNOWN_SIGNER ? "unknown_signer" : "not_intact";
      result.dataset.verdict = word;
      const zone = siteZone(r.site);
      const when = (s: string) => (s ? fmtDateTime(Date.parse(s), zone) : "—");
      fill(
        result,
        h("p", { class: verdict === BundleVerdict.INTACT ? "ok-text result-line" : "error result-line", role: verdict === BundleVerdict.INTACT ? "status" : "alert" },
          verdict === BundleVerdict.INTACT
            ? t("evidence.verify_intact", { signer: r.signer })
            : verdict === BundleVerdict.UNKNOWN_SIGNER
              ? t("evidence.verify_unknown")
              : t("evidence.verify_not_intact", { n: problems.length })),
        problems.length ? h("ul", { class: "problems" }, problems.map((p) => h("li", { class: "verify-problem" }, p))) : null,
        r.notes.length ? h("ul", { class: "notes muted small" }, r.notes.map((n) => h("li", { class: "verify-note" }, n))) : null,
        h("dl", { class: "facts" },
          h("dt", null, t("evidence.bundle")), h("dd", null, h("code", null, r.bundleId || "—")),
          h("dt", null, t("evidence.verify_site_case")), h("dd", null, `${r.site || "—"} · ${r.caseId || "—"}`),
          h("dt", null, t("evidence.verify_exported_by")), h("dd", null, `${r.exportedBy || "—"} · ${when(r.createdAt)}`),
          h("dt", null, t("evidence.verify_range")), h("dd", null, `${when(r.rangeFrom)} – ${when(r.rangeTo)}`),
          h("dt", null, t("evidence.contents")), h("dd", null, t("evidence.verify_counts", { cameras: r.cameras, segments: Number(r.segmentsChecked), gaps: Number(r.gaps) })),
          h("dt", null, t("evidence.public_key")), h("dd", null, h("code", { class: "hash" }, r.signingKey || "—")),
        ),
      );
      stage.textContent = "";
    } catch (e) {
      if (!isAbort(e)) {
        stage.textContent = "";
        result.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(e)));
      }
    } finally {
      progress.hidden = true;
      submit.disabled = false;
    }
  });
  return form;
}

/** The site's earlier bundles (ListEvidenceBundles), newest first; a ready one's download
 *  link on request (GetEvidenceBundle: a logged read that needs the reason). Returns reload. */
function bundlesSection(
  root: HTMLElement,
  storage: ReturnType<typeof client<typeof StorageService>>,
  sites: string[],
  signal: AbortSignal,
): () => void {
  const site = h("select", { id: "bundles-site" }, sites.map((x) => h("option", { value: x }, x)));
  const caseId = h("input", { id: "bundles-case", type: "text", autocomplete: "off" });
  const apply = h("button", { id: "bundles-apply", type: "submit", class: "secondary" }, t("evidence.bundles_apply"));
  const body = h("tbody");
  const status = h("div", { "aria-live": "polite" });
  const more = h("button", { id: "bundles-more", type: "button", class: "secondary", hidden: true }, t("audit.more"));
  let token = "";
  root.replaceChildren(
    h("h2", { id: "bundles-title" }, t("evidence.bundles_title")),
    h("form", { class: "filters" },
      h("div", { class: "field" }, h("label", { for: "bundles-site" }, t("evidence.bundles_site")), site),
      h("div", { class: "field" }, h("label", { for: "bundles-case" }, t("evidence.case")), caseId),
      h("div", { class: "actions" }, apply),
    ),
    status,
    h("div", { class: "table-wrap" },
      h("table", { class: "data" },
        h("thead", null, h("tr", null,
          ...["evidence.bundles_created", "evidence.cameras", "evidence.verify_range", "evidence.case", "evidence.verify_exported_by", "evidence.contents", "evidence.bundles_state", "evidence.bundles_actions"]
            .map((k) => h("th", { scope: "col" }, t(k as never))))),
        body,
      ),
    ),
    more,
  );

  function row(b: EvidenceBundle): HTMLElement {
    const zone = siteZone(b.cameras[0]?.site ?? site.value);
    const state = enumWord(EvidenceBundleState, b.state);
    const cell = h("td", null);
    if (b.state === EvidenceBundleState.READY) {
      const get = h("button", { type: "button", class: "bundle-link secondary small" }, t("evidence.bundles_link"));
      get.addEventListener("click", async () => {
        const audit = await ensureAudit();
        if (!audit) return;
        try {
          const r = await storage.getEvidenceBundle({ bundleId: b.id, audit: auditContext(audit), urlTtl: dur(3600) }, { signal });
          const url = r.download?.url;
          fill(cell, url
            ? h("a", { class: "bundle-download", href: url, download: `evidence-${b.id}.tar`, rel: "noopener" }, t("evidence.download"))
            : h("span", { class: "error" }, t("evidence.no_url")));
        } catch (e) {
          if (!isAbort(e)) fill(cell, errorBox(e));
        }
      });
      cell.append(get);
    } else if (b.state === EvidenceBundleState.FAILED) {
      cell.append(h("span", { class: "error small" }, b.error));
    }
    return h("tr", { class: "bundle-row", dataset: { id: b.id, state } },
      h("td", null, fmtDateTime(ms(b.createdAt), zone)),
      h("td", null, b.cameras.map((c) => c.camera).join(", ")),
      h("td", null, `${fmtDateTime(ms(b.range?.start), zone)} – ${fmtDateTime(ms(b.range?.end), zone)}`),
      h("td", null, b.caseId, h("br"), h("span", { class: "muted small" }, b.reason)),
      h("td", null, b.exportedBy),
      h("td", null, t("evidence.counts", { segments: b.segmentCount, gaps: b.gapCount, size: fmtBytes(b.sizeBytes) })),
      h("td", null, enumLabel("bundle_state", state)),
      cell,
    );
  }

  async function load(append: boolean) {
    if (!site.value) {
      status.replaceChildren(h("p", { class: "muted" }, t("cameras.none")));
      return;
    }
    if (!append) {
      token = "";
      body.replaceChildren();
    }
    try {
      const r = await storage.listEvidenceBundles({ site: site.value, caseId: caseId.value.trim(), page: { pageSize: 50, pageToken: token } }, { signal });
      for (const b of r.bundles) body.append(row(b));
      token = r.page?.nextPageToken ?? "";
      more.hidden = !token;
      status.replaceChildren(body.children.length ? "" : h("p", { class: "muted" }, t("evidence.bundles_none")));
    } catch (e) {
      if (!isAbort(e)) status.replaceChildren(errorBox(e));
    }
  }
  root.querySelector("form")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void load(false);
  });
  more.addEventListener("click", () => void load(true));
  void load(false);
  return () => void load(false);
}
