// The console's shell: header, language, sign-in guard and the hash router (#/page/...).
import { loadSiteZones } from "./time";
import "./style.css";
import { h, fill } from "./dom";
import { t, lang, setLang, langNames, type Lang } from "./i18n";
import { client, session, errorText } from "./api";
import { askReason, currentAudit, onAuditChange } from "./reason";
import { IdentityService, type Principal } from "./gen/kordon/common/v1/common_pb";
import type { PageCtx } from "./ui";

type PageModule = { render(ctx: PageCtx): Promise<void> | void };

const pages: Record<string, () => Promise<PageModule>> = {
  signin: () => import("./pages/signin"),
  cameras: () => import("./pages/cameras"),
  camera: () => import("./pages/camera"),
  alerts: () => import("./pages/alerts"),
  evidence: () => import("./pages/evidence"),
  audit: () => import("./pages/audit"),
  partners: () => import("./pages/partners"),
};

let principal: Principal | null = null;
let whoamiError = "";
let current: AbortController | null = null;

export function setPrincipal(p: Principal | null): void {
  principal = p;
  whoamiError = "";
  renderHeader();
}

/** The sites the principal holds roles on ("*" left out). */
export function principalSites(): string[] {
  return [...new Set((principal?.roles ?? []).map((r) => r.site).filter((s) => s && s !== "*"))].sort();
}

const header = h("header", { class: "topbar" });
const main = h("main", { id: "main", tabindex: "-1" });

function navLink(id: string, page: string, label: string, active: string) {
  return h(
    "li",
    null,
    h("a", { id, href: `#/${page}`, "aria-current": active === page ? "page" : undefined }, label),
  );
}

function renderHeader(): void {
  const route = parse().page;
  const active = route === "camera" ? "cameras" : route;
  const signedIn = session.mode !== "";
  const audit = currentAudit();
  const langSelect = h(
    "select",
    {
      id: "lang",
      onchange: (e: Event) => {
        setLang((e.target as HTMLSelectElement).value as Lang);
        renderHeader();
        void route_();
      },
    },
    (Object.keys(langNames) as Lang[]).map((l) =>
      h("option", { value: l, selected: l === lang(), lang: l }, langNames[l]),
    ),
  );
  fill(
    header,
    h("a", { class: "skip", href: "#main", onclick: (e: Event) => { e.preventDefault(); main.focus(); } }, t("nav.skip")),
    h("a", { class: "brand", href: signedIn ? "#/cameras" : "#/signin" }, h("span", { "aria-hidden": "true", class: "logo" }, "◆"), " Kordon"),
    signedIn
      ? h(
          "nav",
          { "aria-label": t("nav.label") },
          h(
            "ul",
            null,
            navLink("nav-cameras", "cameras", t("nav.cameras"), active),
            navLink("nav-alerts", "alerts", t("nav.alerts"), active),
            navLink("nav-evidence", "evidence", t("nav.evidence"), active),
            navLink("nav-audit", "audit", t("nav.audit"), active),
            navLink("nav-partners", "partners", t("nav.partners"), active),
          ),
        )
      : h("span", { class: "spacer" }),
    h(
      "div",
      { class: "tools" },
      signedIn
        ? h(
            "button",
            {
              type: "button",
              id: "reason-change",
              class: audit ? "chip" : "chip warn",
              title: audit ? `${t("reason.reason")}: ${audit.reason}${audit.caseId ? ` · ${t("reason.case")}: ${audit.caseId}` : ""}` : t("reason.none"),
              onclick: () => void askReason(),
            },
            audit ? `${t("reason.current")}: ${audit.reason.length > 24 ? `${audit.reason.slice(0, 24)}…` : audit.reason}` : t("reason.none"),
          )
        : null,
      signedIn
        ? h(
            "span",
            { class: "who", title: principal ? principal.subject : whoamiError },
            h("span", { class: "sr-only" }, `${t("header.signed_in_as")} `),
            h("span", { id: "whoami" }, principal ? principal.displayName || principal.subject : whoamiError ? "?" : "…"),
          )
        : null,
      signedIn
        ? h("button", { type: "button", class: "secondary small", id: "signout", onclick: signOut }, t("header.sign_out"))
        : null,
      h("label", { for: "lang", class: "sr-only" }, t("header.language")),
      langSelect,
    ),
  );
}

function signOut(): void {
  session.signOut();
  principal = null;
  location.hash = "#/signin";
}

function parse(): { page: string; params: string[]; query: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, q] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] ?? "", params: parts.slice(1), query: new URLSearchParams(q ?? "") };
}

async function loadPrincipal(): Promise<void> {
  try {
    const r = await client(IdentityService).whoAmI({});
    principal = r.principal ?? null;
    whoamiError = "";
  } catch (e) {
    principal = null;
    whoamiError = errorText(e);
  }
  renderHeader();
}

async function route_(): Promise<void> {
  let { page, params, query } = parse();
  if (session.mode === "" && page !== "signin") {
    location.replace("#/signin");
    return;
  }
  if (!(page in pages)) {
    location.replace(session.mode === "" ? "#/signin" : "#/cameras");
    return;
  }
  if (page !== "signin") {
    // Times are shown in each site's zone; a page without them would show UTC.
    await loadSiteZones().catch((e: unknown) => console.warn("site time zones:", errorText(e)));
  }
  current?.abort();
  const ctrl = new AbortController();
  current = ctrl;
  delete document.body.dataset.page;
  renderHeader();
  const root = h("div", { class: `page page-${page}` });
  main.replaceChildren(root);
  if (session.mode !== "" && !principal) void loadPrincipal();
  try {
    const mod = await pages[page]();
    if (ctrl.signal.aborted) return;
    await mod.render({ root, signal: ctrl.signal, params, query });
  } catch (e) {
    if (!ctrl.signal.aborted) root.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(e)));
  }
}

export function navigate(hash: string): void {
  if (location.hash === hash) void route_();
  else location.hash = hash;
}

document.body.replaceChildren(header, main);
onAuditChange(renderHeader);
window.addEventListener("hashchange", () => void route_());
void route_();
