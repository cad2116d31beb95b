// Sign in with a bearer token, or (where the server allows it) as the development identity.
import { h } from "../dom";
import { t } from "../i18n";
import { clientWithToken, session, errorText, isAbort } from "../api";
import { IdentityService } from "../gen/kordon/common/v1/common_pb";
import { navigate, setPrincipal } from "../main";
import { pageReady, type PageCtx } from "../ui";

export async function render({ root, signal }: PageCtx): Promise<void> {
  const token = h("input", {
    id: "signin-token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const submit = h("button", { id: "signin-submit", type: "submit", class: "primary" }, t("signin.submit"));
  const error = h("div", { class: "form-error", "aria-live": "polite" });
  const devBox = h("div", { class: "dev-box", hidden: true });

  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, t("signin.title")),
    h("p", { class: "muted" }, t("signin.explain")),
    h("div", { class: "field" }, h("label", { for: "signin-token" }, t("signin.token")), token),
    h("div", { class: "actions" }, submit),
    error,
    devBox,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = token.value.trim();
    if (!value) {
      token.focus();
      return;
    }
    submit.disabled = true;
    error.replaceChildren();
    try {
      const r = await clientWithToken(IdentityService, value).whoAmI({}, { signal });
      session.signIn("token", value);
      setPrincipal(r.principal ?? null);
      navigate("#/cameras");
    } catch (e) {
      if (!isAbort(e)) error.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(e)));
    } finally {
      submit.disabled = false;
    }
  });
  root.append(form);
  token.focus();

  // Without credentials the server answers as the development identity, where enabled.
  try {
    const r = await clientWithToken(IdentityService, "").whoAmI({}, { signal });
    const p = r.principal;
    devBox.hidden = false;
    devBox.replaceChildren(
      h("p", { class: "muted" }, t("signin.dev_available", { server: r.server || "kordon", name: p?.displayName || p?.subject || "" })),
      h(
        "button",
        {
          id: "signin-dev",
          type: "button",
          class: "secondary",
          onclick: () => {
            session.signIn("dev");
            setPrincipal(p ?? null);
            navigate("#/cameras");
          },
        },
        t("signin.dev"),
      ),
    );
  } catch {
    // No development identity here: a token is needed.
  }
  if (!signal.aborted) pageReady("signin");
}
