// UI language: English, Bulgarian or Turkish, from navigator.languages or the user's choice.
import { en, type Catalog } from "./en";
import { bg } from "./bg";
import { tr } from "./tr";

export type Lang = "en" | "bg" | "tr";
export type Key = keyof Catalog;

export const catalogs: Record<Lang, Catalog> = { en, bg, tr };
export const langNames: Record<Lang, string> = { en: "English", bg: "Български", tr: "Türkçe" };
const LANG_KEY = "kordon.lang";

function detect(): Lang {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved === "en" || saved === "bg" || saved === "tr") return saved;
  for (const l of navigator.languages ?? [navigator.language]) {
    const base = l.toLowerCase().split("-")[0];
    if (base === "en" || base === "bg" || base === "tr") return base;
  }
  return "en";
}

let current: Lang = detect();

export function lang(): Lang {
  return current;
}

export function setLang(l: Lang): void {
  current = l;
  localStorage.setItem(LANG_KEY, l);
  document.documentElement.lang = l;
}

/** The string for `key`, with `{name}` placeholders replaced from `vars`. */
export function t(key: Key, vars?: Record<string, string | number | bigint>): string {
  let s: string = catalogs[current][key] ?? en[key];
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  return s;
}

/** A proto enum value's label: `prefix` + the lower-cased name, or the name itself. */
export function enumLabel(prefix: string, name: string): string {
  const key = `${prefix}.${name}` as Key;
  return key in en ? t(key) : name;
}

document.documentElement.lang = current;
