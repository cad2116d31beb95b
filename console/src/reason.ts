// The reason (and case) for reading footage: asked once in a dialog, kept for the tab's
// session, and sent as the AuditContext of every footage request.
import { h } from "./dom";
import { t } from "./i18n";

const KEY = "kordon.audit";

export interface Audit {
  reason: string;
  caseId: string;
}

const listeners = new Set<() => void>();

export function onAuditChange(f: () => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

export function currentAudit(): Audit | null {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) ?? "null") as Audit | null;
    return v && v.reason ? v : null;
  } catch {
    return null;
  }
}

export function setAudit(a: Audit | null): void {
  if (a) sessionStorage.setItem(KEY, JSON.stringify(a));
  else sessionStorage.removeItem(KEY);
  for (const f of listeners) f();
}

/** The AuditContext message (init shape) for a request; recipient for exports. */
export function auditContext(a: Audit, recipient = "") {
  return { reason: a.reason, caseId: a.caseId, recipient };
}

let pending: { resolve: (a: Audit | null) => void } | null = null;

function dialog(): HTMLDialogElement {
  let d = document.getElementById("reason-dialog") as HTMLDialogElement | null;
  if (d) return d;
  d = h("dialog", { id: "reason-dialog", "aria-labelledby": "reason-title" });
  document.body.appendChild(d);
  d.addEventListener("close", () => {
    const p = pending;
    pending = null;
    p?.resolve(currentAudit());
  });
  return d;
}

function render(d: HTMLDialogElement, cur: Audit | null): void {
  const reason = h("input", {
    id: "reason-input",
    type: "text",
    required: true,
    autocomplete: "off",
    maxlength: 500,
    value: cur?.reason ?? "",
    placeholder: t("reason.reason_placeholder"),
  });
  const caseInput = h("input", {
    id: "case-input",
    type: "text",
    autocomplete: "off",
    maxlength: 200,
    value: cur?.caseId ?? "",
    placeholder: t("reason.case_placeholder"),
  });
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", { id: "reason-title" }, t("reason.title")),
    h("p", { class: "muted" }, t("reason.explain")),
    h("div", { class: "field" }, h("label", { for: "reason-input" }, t("reason.reason")), reason),
    h("div", { class: "field" }, h("label", { for: "case-input" }, t("reason.case")), caseInput),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => d.close() }, t("common.cancel")),
      h("button", { id: "reason-submit", type: "submit", class: "primary" }, t("reason.submit")),
    ),
  );
  form.addEventListener("submit", (ev) => {
    const r = reason.value.trim();
    if (!r) {
      ev.preventDefault();
      reason.focus();
      return;
    }
    setAudit({ reason: r, caseId: caseInput.value.trim() });
  });
  d.replaceChildren(form);
}

/** Opens the dialog (prefilled with the current reason); resolves with the reason then in effect. */
export function askReason(): Promise<Audit | null> {
  const d = dialog();
  render(d, currentAudit());
  if (!d.open) d.showModal();
  (document.getElementById("reason-input") as HTMLInputElement | null)?.focus();
  return new Promise((resolve) => {
    const prev = pending;
    pending = {
      resolve: (a) => {
        prev?.resolve(a);
        resolve(a);
      },
    };
  });
}

/** The current reason, asking for one first when none is set; null if the user cancels. */
export async function ensureAudit(): Promise<Audit | null> {
  return currentAudit() ?? (await askReason());
}
