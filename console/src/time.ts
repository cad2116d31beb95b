// Times in a site's zone, as the site's alerting service names it (ListSiteTimeZones: the
// zone rules' schedules use), loaded once signed in; a site without one is in the default zone.
import { lang } from "./i18n";
import { client } from "./api";

const zones = new Map<string, string>();
let defaultZone = "UTC";
let loaded: Promise<void> | null = null;

/** Loads the sites' zones once (again after a failure, e.g. before signing in). */
export function loadSiteZones(): Promise<void> {
  // The alerting API's code is a chunk of its own (the alerts and camera pages share it).
  loaded ??= import("./gen/kordon/alerting/v1/alerting_pb")
    .then(({ AlertingService }) => client(AlertingService).listSiteTimeZones({}))
    .then((r) => {
      zones.clear();
      for (const s of r.sites) zones.set(s.site, s.timeZone);
      defaultZone = r.defaultTimeZone || "UTC";
    })
    .catch((e: unknown) => {
      loaded = null;
      throw e;
    });
  return loaded;
}

export function siteZone(site: string): string {
  return zones.get(site) ?? defaultZone;
}

const fmtCache = new Map<string, Intl.DateTimeFormat>();
function fmt(zone: string, kind: "full" | "time" | "date"): Intl.DateTimeFormat {
  const key = `${lang()}|${zone}|${kind}`;
  let f = fmtCache.get(key);
  if (!f) {
    const opts: Intl.DateTimeFormatOptions =
      kind === "full"
        ? { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" }
        : kind === "time"
          ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }
          : { year: "numeric", month: "2-digit", day: "2-digit" };
    f = new Intl.DateTimeFormat(lang(), { ...opts, timeZone: zone });
    fmtCache.set(key, f);
  }
  return f;
}

/** Date and time with the zone's short name, e.g. "14.05.2026 г., 10:14:06 EEST". */
export function fmtDateTime(msec: number | undefined, zone: string): string {
  return msec === undefined ? "—" : fmt(zone, "full").format(msec);
}

export function fmtTime(msec: number | undefined, zone: string): string {
  return msec === undefined ? "—" : fmt(zone, "time").format(msec);
}

const wallCache = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock fields of instant `msec` in `zone`, zero-padded ("2026", "05", "14", "09"…). */
function wall(msec: number, zone: string): Record<"year" | "month" | "day" | "hour" | "minute" | "second", string> {
  let f = wallCache.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-CA", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    wallCache.set(zone, f);
  }
  const parts = f.formatToParts(msec);
  const v = (t: string) => parts.find((p) => p.type === t)?.value ?? "";
  return { year: v("year"), month: v("month"), day: v("day"), hour: v("hour"), minute: v("minute"), second: v("second") };
}

/** The zone's offset from UTC at instant `msec`, in milliseconds. */
function offset(msec: number, zone: string): number {
  const w = wall(msec, zone);
  const asUtc = Date.UTC(+w.year, +w.month - 1, +w.day, +w.hour % 24, +w.minute, +w.second);
  return asUtc - Math.floor(msec / 1000) * 1000;
}

/** The instant of wall time y-m-d h:mi:s in `zone`. */
export function zonedInstant(y: number, mo: number, d: number, hh: number, mi: number, ss: number, zone: string): number {
  const guess = Date.UTC(y, mo - 1, d, hh, mi, ss);
  let t = guess - offset(guess, zone);
  t = guess - offset(t, zone);
  return t;
}

/** "YYYY-MM-DD" of instant `msec` in `zone`. */
export function dayOf(msec: number, zone: string): string {
  const w = wall(msec, zone);
  return `${w.year}-${w.month}-${w.day}`;
}

/** [start, end) of the day "YYYY-MM-DD" in `zone` (23 or 25 hours on DST changes). */
export function dayRange(day: string, zone: string): [number, number] {
  const [y, m, d] = day.split("-").map(Number);
  const start = zonedInstant(y, m, d, 0, 0, 0, zone);
  const next = new Date(Date.UTC(y, m - 1, d + 1));
  const end = zonedInstant(next.getUTCFullYear(), next.getUTCMonth() + 1, next.getUTCDate(), 0, 0, 0, zone);
  return [start, end];
}

/** A datetime-local value ("YYYY-MM-DDTHH:MM[:SS]") read as wall time in `zone`. */
export function parseLocal(value: string, zone: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value);
  if (!m) return undefined;
  return zonedInstant(+m[1], +m[2], +m[3], +m[4], +m[5], +(m[6] ?? 0), zone);
}

/** Instant `msec` as a datetime-local value in `zone`. */
export function toLocalInput(msec: number, zone: string): string {
  const w = wall(msec, zone);
  return `${w.year}-${w.month}-${w.day}T${w.hour}:${w.minute}`;
}
