// Footage shared with partner installations: requests partners made of this site (approve or
// refuse with a note), requests this site made of partners (state, and the signed bundle of an
// approved one, streamed by FetchFootageGrant into a download link), and a form to ask a
// partner for footage (RequestFootage, relayed by this site's storage over the partner link).
import { h, fill } from "../dom";
import { t, enumLabel } from "../i18n";
import { client, ms, ts, errorText, isAbort, allPages } from "../api";
import { currentAudit, setAudit, ensureAudit, auditContext } from "../reason";
import {
  StorageService,
  FootageGrantState,
  FootageDecision,
  type FootageGrant,
} from "../gen/kordon/storage/v1/storage_pb";
import { AlertingService, type SharingAgreement } from "../gen/kordon/alerting/v1/alerting_pb";
import { enumWord, errorBox, pageReady, fmtBytes, type PageCtx } from "../ui";
import { fmtDateTime, parseLocal, siteZone, toLocalInput } from "../time";
import { principalSites } from "../main";

/** How often the lists are read again while the page is open (a partner's decision shows up). */
const REFRESH_MS = 10_000;

type Direction = "in" | "out";

/** What changes a row's look: a row is redrawn only when this does (a typed note survives). */
function fingerprint(g: FootageGrant): string {
  return [g.state, ms(g.decidedAt) ?? "", g.bundleId, g.bundleSha256, ms(g.accessUntil) ?? ""].join("|");
}

function fmtDuration(seconds: bigint | number | undefined): string {
  const s = Number(seconds ?? 0);
  if (!s) return "—";
  if (s % 86400 === 0) return t("partners.days", { n: s / 86400 });
  if (s % 3600 === 0) return t("partners.hours", { n: s / 3600 });
  return t("partners.minutes", { n: Math.max(1, Math.round(s / 60)) });
}

async function sha256Hex(parts: Uint8Array[]): Promise<string | null> {
  if (!crypto?.subtle) return null; // not a secure context: the server's check stands alone
  const buf = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    buf.set(p, o);
    o += p.length;
  }
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  return [...d].map((x) => x.toString(16).padStart(2, "0")).join("");
}

export async function render({ root, signal }: PageCtx): Promise<void> {
  const storage = client(StorageService);
  const alerting = client(AlertingService);
  const audit = currentAudit();
  const blobUrls: string[] = [];
  signal.addEventListener("abort", () => blobUrls.forEach((u) => URL.revokeObjectURL(u)));

  // --- the request form --------------------------------------------------------------------
  const site = h("select", { id: "request-site", required: true });
  const camera = h("input", { id: "request-camera", type: "text", required: true, autocomplete: "off", list: "request-camera-list", spellcheck: "false" });
  const cameraList = h("datalist", { id: "request-camera-list" });
  const from = h("input", { id: "request-from", type: "datetime-local", required: true, step: 1 });
  const to = h("input", { id: "request-to", type: "datetime-local", required: true, step: 1 });
  const reason = h("input", { id: "request-reason", type: "text", required: true, autocomplete: "off", maxlength: 2000, value: audit?.reason ?? "" });
  const caseId = h("input", { id: "request-case", type: "text", required: true, autocomplete: "off", maxlength: 200, value: audit?.caseId ?? "" });
  const legalBasis = h("input", { id: "request-legal-basis", type: "text", required: true, autocomplete: "off", placeholder: t("partners.legal_basis_placeholder") });
  const submit = h("button", { id: "request-submit", type: "submit", class: "primary" }, t("partners.submit"));
  const zoneNote = h("p", { class: "muted small", "aria-live": "polite" });
  const terms = h("p", { class: "muted small", id: "request-terms", "aria-live": "polite" });
  const formError = h("div", { id: "request-error", "aria-live": "assertive" });
  const formResult = h("div", { id: "request-result", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card request-form", "aria-labelledby": "request-title" },
    h("h2", { id: "request-title" }, t("partners.request_title")),
    h("p", { class: "muted small" }, t("partners.request_explain")),
    h("div", { class: "grid2" },
      h("div", { class: "field" }, h("label", { for: "request-site" }, t("partners.partner")), site),
      h("div", { class: "field" }, h("label", { for: "request-camera" }, t("partners.camera")), camera, cameraList),
      h("div", { class: "field" }, h("label", { for: "request-from" }, t("partners.from")), from),
      h("div", { class: "field" }, h("label", { for: "request-to" }, t("partners.to")), to),
    ),
    zoneNote,
    terms,
    h("div", { class: "grid2" },
      h("div", { class: "field" }, h("label", { for: "request-reason" }, t("partners.reason")), reason),
      h("div", { class: "field" }, h("label", { for: "request-case" }, t("partners.case")), caseId),
      h("div", { class: "field" }, h("label", { for: "request-legal-basis" }, t("partners.legal_basis")), legalBasis),
    ),
    h("div", { class: "actions" }, submit),
    formError,
    formResult,
  );

  // --- the two lists -------------------------------------------------------------------------
  const listError = h("div", { id: "grants-error", "aria-live": "polite" });
  const inBody = h("tbody");
  const outBody = h("tbody");
  const inEmpty = h("p", { class: "muted", hidden: true }, t("partners.none_in"));
  const outEmpty = h("p", { class: "muted", hidden: true }, t("partners.none_out"));
  const refresh = h("button", { id: "grants-refresh", type: "button", class: "secondary small" }, t("partners.refresh"));
  const head = (...cols: string[]) => h("thead", null, h("tr", null, cols.map((c) => h("th", { scope: "col" }, c))));
  const inTable = h("section", { class: "grants", "aria-labelledby": "grants-in-title" },
    h("h2", { id: "grants-in-title" }, t("partners.incoming")),
    h("p", { class: "muted small" }, t("partners.incoming_explain")),
    h("div", { class: "table-wrap" },
      h("table", { id: "grants-in", class: "grants-table" },
        h("caption", { class: "sr-only" }, t("partners.incoming")),
        head(t("partners.asked_by"), t("partners.cameras"), t("partners.range"), t("partners.reason_case"), t("partners.state"), t("partners.actions")),
        inBody,
      ),
    ),
    inEmpty,
  );
  const outTable = h("section", { class: "grants", "aria-labelledby": "grants-out-title" },
    h("h2", { id: "grants-out-title" }, t("partners.outgoing")),
    h("p", { class: "muted small" }, t("partners.outgoing_explain")),
    h("div", { class: "table-wrap" },
      h("table", { id: "grants-out", class: "grants-table" },
        h("caption", { class: "sr-only" }, t("partners.outgoing")),
        head(t("partners.partner"), t("partners.cameras"), t("partners.range"), t("partners.reason_case"), t("partners.state"), t("partners.actions")),
        outBody,
      ),
    ),
    outEmpty,
  );

  root.append(
    h("div", { class: "page-head" },
      h("h1", { id: "partners-title" }, t("partners.title")),
      h("p", { class: "muted" }, t("partners.explain")),
      h("div", { class: "toolbar" }, refresh),
    ),
    listError,
    inTable,
    outTable,
    form,
  );

  // --- agreements: which partners, which of their cameras we may ask for ------------------
  let agreements: SharingAgreement[] = [];
  try {
    agreements = (await alerting.listSharingAgreements({}, { signal })).agreements;
  } catch (e) {
    if (isAbort(e)) return;
    formError.replaceChildren(errorBox(e));
  }
  const partnerSites = new Set(agreements.map((a) => a.partnerSite));
  const requestable = agreements.filter((a) => a.receives?.footageRequests);
  for (const a of requestable.length ? requestable : agreements) {
    site.append(h("option", { value: a.partnerSite }, a.partnerDisplayName ? `${a.partnerSite} — ${a.partnerDisplayName}` : a.partnerSite));
  }
  if (agreements.length === 0) {
    site.append(h("option", { value: "" }, t("partners.no_partners")));
    submit.disabled = true;
  }
  const agreementOf = (s: string) => agreements.find((a) => a.partnerSite === s);
  const zone = () => siteZone(site.value);
  const onSite = () => {
    const a = agreementOf(site.value);
    const shared = a?.receives?.cameras ?? [];
    fill(cameraList, shared.map((c) => h("option", { value: c })));
    if (shared.length === 1 && !camera.value) camera.value = shared[0];
    zoneNote.textContent = t("partners.zone_note", { site: site.value || "—", zone: zone() });
    const bits: string[] = [];
    if (a && !a.receives?.footageRequests) bits.push(t("partners.no_requests"));
    if (a?.receives?.maxFootageRange) bits.push(t("partners.max_range", { d: fmtDuration(a.receives.maxFootageRange.seconds) }));
    if (a?.receives?.keepFor) bits.push(t("partners.keep_for", { d: fmtDuration(a.receives.keepFor.seconds) }));
    if (shared.length) bits.push(t("partners.shared_cameras", { list: shared.join(", ") }));
    terms.textContent = bits.join(" · ");
    const now = Date.now();
    to.value = toLocalInput(now - 60_000, zone());
    from.value = toLocalInput(now - 5 * 60_000, zone());
    // The zone the inputs are read in, for tests and scripts that fill them.
    from.dataset.zone = to.dataset.zone = zone();
  };
  site.addEventListener("change", onSite);
  onSite();

  // --- rows ------------------------------------------------------------------------------
  const mySites = principalSites();
  const direction = (g: FootageGrant): Direction => {
    if (partnerSites.has(g.ownerSite) && !partnerSites.has(g.requestingSite)) return "out";
    if (partnerSites.has(g.requestingSite)) return "in";
    return mySites.includes(g.requestingSite) && !mySites.includes(g.ownerSite) ? "out" : "in";
  };
  const rows = new Map<string, { el: HTMLElement; print: string }>();

  const rangeCell = (g: FootageGrant) => {
    const z = siteZone(g.ownerSite);
    const r = g.range;
    const asked = g.requestedRange;
    const narrowed = asked && r && (ms(asked.start) !== ms(r.start) || ms(asked.end) !== ms(r.end));
    return h("td", null,
      h("div", null, fmtDateTime(ms(r?.start), z)),
      h("div", null, `– ${fmtDateTime(ms(r?.end), z)}`),
      narrowed ? h("div", { class: "muted small" }, t("partners.asked_range", { from: fmtDateTime(ms(asked.start), z), to: fmtDateTime(ms(asked.end), z) })) : null,
    );
  };
  const reasonCell = (g: FootageGrant) =>
    h("td", { class: "reason-cell" },
      h("div", null, g.audit?.reason || "—"),
      g.audit?.caseId ? h("div", { class: "muted small" }, `${t("partners.case")}: `, h("span", { class: "grant-case" }, g.audit.caseId)) : null,
      g.legalBasis ? h("div", { class: "muted small" }, `${t("partners.legal_basis")}: ${g.legalBasis}`) : null,
      g.audit?.recipient ? h("div", { class: "muted small" }, `${t("partners.recipient")}: ${g.audit.recipient}`) : null,
    );
  const stateCell = (g: FootageGrant, state: string) => {
    const z = siteZone(g.ownerSite);
    return h("td", null,
      h("span", { class: `badge grant-state gs-${state}` }, enumLabel("grant_state", state)),
      h("div", { class: "muted small" }, `${t("partners.created")} ${fmtDateTime(ms(g.createdAt), z)}`),
      g.decidedBy ? h("div", { class: "muted small" }, `${t("partners.decided_by")} ${g.decidedBy}, ${fmtDateTime(ms(g.decidedAt), z)}`) : null,
      g.decisionReason ? h("div", { class: "grant-decision small" }, `${t("partners.note")}: ${g.decisionReason}`) : null,
      g.accessUntil && state === "approved" ? h("div", { class: "muted small" }, t("partners.until", { time: fmtDateTime(ms(g.accessUntil), z) })) : null,
      g.accessUntil && state === "expired" ? h("div", { class: "muted small" }, t("partners.expired_at", { time: fmtDateTime(ms(g.accessUntil), z) })) : null,
    );
  };
  const camerasCell = (g: FootageGrant) =>
    h("td", null,
      g.cameras.map((c) => h("div", null, h("code", null, `${c.site}/${c.camera}`))),
      g.form ? h("div", { class: "muted small" }, t("partners.form", { form: g.form === "masked" ? t("partners.form_masked") : t("partners.form_original") })) : null,
    );

  const incomingRow = (g: FootageGrant, state: string): HTMLElement => {
    const rowErr = h("div", { class: "row-error", "aria-live": "polite" });
    const pending = g.state === FootageGrantState.PENDING;
    const note = h("input", { class: "grant-note", type: "text", maxlength: 2000, "aria-label": t("partners.note"), placeholder: t("partners.note_placeholder") });
    const approve = h("button", { type: "button", class: "grant-approve primary small" }, t("partners.approve"));
    const refuse = h("button", { type: "button", class: "grant-refuse secondary small" }, t("partners.refuse"));
    const decide = async (decision: FootageDecision) => {
      rowErr.replaceChildren();
      const text = note.value.trim();
      if (!text) {
        rowErr.replaceChildren(h("p", { class: "error small", role: "alert" }, t("partners.need_note")));
        note.focus();
        return;
      }
      approve.disabled = refuse.disabled = note.disabled = true;
      if (decision === FootageDecision.APPROVE) rowErr.replaceChildren(h("p", { class: "muted small", role: "status" }, t("partners.building")));
      try {
        const r = await storage.decideFootageGrant(
          { grantId: g.id, decision, audit: { reason: text, caseId: g.audit?.caseId ?? "", recipient: "" } },
          { signal },
        );
        if (r.grant) place(r.grant, true);
        else await load();
      } catch (e) {
        if (isAbort(e)) return;
        approve.disabled = refuse.disabled = note.disabled = false;
        rowErr.replaceChildren(h("p", { class: "error small", role: "alert" }, errorText(e)));
      }
    };
    approve.addEventListener("click", () => void decide(FootageDecision.APPROVE));
    refuse.addEventListener("click", () => void decide(FootageDecision.DENY));
    return h("tr", { class: "grant-row", dataset: { id: g.id, direction: "in", state } },
      h("td", null,
        h("div", null, h("strong", null, g.requestingSite)),
        h("div", { class: "muted small" }, g.requestedBy),
        h("div", { class: "muted small" }, h("code", { class: "grant-id" }, g.id)),
      ),
      camerasCell(g),
      rangeCell(g),
      reasonCell(g),
      stateCell(g, state),
      h("td", { class: "actions-cell" },
        pending ? h("div", { class: "act-inputs" }, note) : null,
        pending ? h("div", { class: "button-row" }, approve, refuse) : null,
        rowErr,
      ),
    );
  };

  const outgoingRow = (g: FootageGrant, state: string): HTMLElement => {
    const rowErr = h("div", { class: "row-error", "aria-live": "polite" });
    const result = h("div", { class: "grant-result", "aria-live": "polite" });
    const progress = h("progress", { class: "grant-progress", max: 1, value: 0, hidden: true, "aria-label": t("partners.download_progress") });
    const download = h("button", { type: "button", class: "grant-download primary small" }, t("partners.download"));
    download.addEventListener("click", async () => {
      rowErr.replaceChildren();
      result.replaceChildren();
      // The download is logged at both sites with the reason in effect (asked for if none).
      const a = await ensureAudit();
      if (!a) {
        rowErr.replaceChildren(h("p", { class: "error small", role: "alert" }, t("partners.need_reason_download")));
        return;
      }
      download.disabled = true;
      progress.hidden = false;
      progress.removeAttribute("value");
      const parts: Uint8Array[] = [];
      let got = 0;
      let grant: FootageGrant | undefined;
      try {
        const stream = storage.fetchFootageGrant({ grantId: g.id, ownerSite: g.ownerSite, audit: auditContext(a) }, { signal });
        for await (const m of stream) {
          if (m.part.case === "grant") {
            grant = m.part.value;
          } else if (m.part.case === "data") {
            parts.push(m.part.value);
            got += m.part.value.length;
            const total = Number(grant?.bundleSize ?? g.bundleSize);
            if (total > 0) progress.value = Math.min(1, got / total);
          }
        }
        const want = (grant?.bundleSha256 || g.bundleSha256).toLowerCase();
        const sha = await sha256Hex(parts);
        if (sha !== null && want && sha !== want) throw new Error(t("partners.damaged", { sha, want }));
        progress.value = 1;
        const blob = new Blob(parts as BlobPart[], { type: "application/x-tar" });
        const url = URL.createObjectURL(blob);
        blobUrls.push(url);
        const keep = grant?.keepFor ?? g.keepFor;
        fill(
          result,
          h("a", { class: "grant-file button primary small", href: url, download: `${g.id}.tar`, dataset: { sha256: sha ?? "" } }, t("partners.save", { size: fmtBytes(got) })),
          h("div", { class: "muted small" }, sha !== null ? t("partners.sha_ok") : t("partners.sha_unchecked")),
          h("div", { class: "muted small" }, h("code", { class: "hash" }, sha ?? want)),
          keep ? h("div", { class: "muted small" }, t("partners.keep_note", { d: fmtDuration(keep.seconds) })) : null,
        );
      } catch (e) {
        if (isAbort(e)) return;
        rowErr.replaceChildren(h("p", { class: "error small", role: "alert" }, errorText(e)));
      } finally {
        download.disabled = false;
        progress.hidden = true;
      }
    });
    return h("tr", { class: "grant-row", dataset: { id: g.id, direction: "out", state } },
      h("td", null,
        h("div", null, h("strong", null, g.ownerSite)),
        h("div", { class: "muted small" }, `${t("partners.asked_by")}: ${g.requestedBy}`),
        h("div", { class: "muted small" }, h("code", { class: "grant-id" }, g.id)),
      ),
      camerasCell(g),
      rangeCell(g),
      reasonCell(g),
      stateCell(g, state),
      h("td", { class: "actions-cell" },
        state === "approved"
          ? h("div", null,
              h("div", { class: "button-row" }, download),
              g.bundleSize ? h("div", { class: "muted small" }, fmtBytes(g.bundleSize)) : null,
              progress,
              result,
            )
          : null,
        rowErr,
      ),
    );
  };

  /** Puts a grant's row in its table (replacing it when it changed), newest first. */
  function place(g: FootageGrant, force = false): void {
    const print = fingerprint(g);
    const old = rows.get(g.id);
    if (old && old.print === print && !force) return;
    const state = enumWord(FootageGrantState, g.state);
    const dir = direction(g);
    const el = dir === "in" ? incomingRow(g, state) : outgoingRow(g, state);
    // New grants are the newest (the server lists newest first; load() goes oldest first).
    if (old) old.el.replaceWith(el);
    else (dir === "in" ? inBody : outBody).prepend(el);
    rows.set(g.id, { el, print });
    inEmpty.hidden = inBody.childElementCount > 0;
    outEmpty.hidden = outBody.childElementCount > 0;
  }

  let loading_ = false;
  async function load(): Promise<void> {
    if (loading_) return;
    loading_ = true;
    try {
      const grants = await allPages(async (pageToken) => {
        const r = await storage.listFootageGrants({ page: { pageSize: 1000, pageToken } }, { signal });
        return { items: r.grants, next: r.page?.nextPageToken ?? "" };
      });
      listError.replaceChildren();
      const seen = new Set(grants.map((g) => g.id));
      for (const [id, r] of rows) {
        if (!seen.has(id)) {
          r.el.remove();
          rows.delete(id);
        }
      }
      // Oldest first, each new row on top: newest first, as the server lists them, and rows
      // already shown stay where they are (a note being typed keeps its focus).
      for (const g of [...grants].reverse()) place(g);
      inEmpty.hidden = inBody.childElementCount > 0;
      outEmpty.hidden = outBody.childElementCount > 0;
    } catch (e) {
      if (!isAbort(e)) listError.replaceChildren(errorBox(e));
    } finally {
      loading_ = false;
    }
  }
  refresh.addEventListener("click", () => void load());

  // --- submitting a request ----------------------------------------------------------------
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    formError.replaceChildren();
    formResult.replaceChildren();
    const partner = site.value;
    const z = zone();
    const a = parseLocal(from.value, z);
    const b = parseLocal(to.value, z);
    const cams = [...new Set(camera.value.split(",").map((c) => c.trim()).map((c) => (c.startsWith(`${partner}/`) ? c.slice(partner.length + 1) : c)).filter(Boolean))];
    const problems: string[] = [];
    if (!partner) problems.push(t("partners.need_partner"));
    if (cams.length === 0) problems.push(t("partners.need_camera"));
    if (a === undefined || b === undefined || b <= a) problems.push(t("partners.need_range"));
    if (!reason.value.trim()) problems.push(t("partners.need_reason"));
    if (!caseId.value.trim()) problems.push(t("partners.need_case"));
    if (!legalBasis.value.trim()) problems.push(t("partners.need_legal_basis"));
    if (problems.length) {
      formError.replaceChildren(h("p", { class: "error", role: "alert" }, problems.join(" ")));
      return;
    }
    const ctx = auditContext({ reason: reason.value.trim(), caseId: caseId.value.trim() });
    // As on the evidence page, the reason given here is the session's reason from now on.
    setAudit({ reason: ctx.reason, caseId: ctx.caseId });
    submit.disabled = true;
    try {
      const r = await storage.requestFootage(
        {
          cameras: cams.map((c) => ({ site: partner, camera: c })),
          range: { start: ts(a!), end: ts(b!) },
          audit: ctx,
          requestId: crypto.randomUUID(),
          legalBasis: legalBasis.value.trim(),
        },
        { signal },
      );
      if (r.grant) {
        place(r.grant, true);
        formResult.replaceChildren(h("p", { class: "ok-text", role: "status" }, t("partners.requested", { id: r.grant.id, site: r.grant.ownerSite || partner })));
      }
    } catch (e) {
      if (!isAbort(e)) formError.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(e)));
    } finally {
      submit.disabled = agreements.length === 0;
    }
  });

  await load();
  if (signal.aborted) return;
  pageReady("partners");
  const timer = setInterval(() => {
    if (!document.hidden) void load();
  }, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
