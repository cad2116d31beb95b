// Pieces shared by the pages: error boxes, the page-ready marker, the camera list, enum names.
import { h } from "./dom";
import { client, allPages, errorText, isAbort } from "./api";
import { t } from "./i18n";
import { IngestService, type CameraStatus } from "./gen/kordon/ingest/v1/ingest_pb";

export interface PageCtx {
  root: HTMLElement;
  signal: AbortSignal;
  params: string[];
  query: URLSearchParams;
}

/** A visible error with the gRPC message; `.error` for tests, role=alert for screen readers. */
export function errorBox(e: unknown, id?: string): HTMLElement {
  return h("p", { class: "error", role: "alert", id }, errorText(e));
}

/** Shows `e` in `where` unless it is a cancellation (the page was left). */
export function showError(where: Element, e: unknown): void {
  if (isAbort(e)) return;
  where.replaceChildren(errorBox(e));
}

/** Tells tests the page has rendered its data. */
export function pageReady(name: string): void {
  document.body.dataset.page = name;
}

/** A generated enum's value name, lower-cased (protoc-gen-es strips the prefix):
 * AlertState.ON_HOLD -> "on_hold". */
export function enumWord(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase();
}

/** Every camera's ingest status, all pages. */
export async function listCameras(signal: AbortSignal): Promise<CameraStatus[]> {
  const ingest = client(IngestService);
  return allPages(async (pageToken) => {
    const r = await ingest.listCameraStatus({ page: { pageSize: 1000, pageToken } }, { signal });
    return { items: r.cameras, next: r.page?.nextPageToken ?? "" };
  });
}

export function cameraKey(site: string, camera: string): string {
  return `${site}/${camera}`;
}

export function cameraHref(site: string, camera: string, at?: number): string {
  const base = `#/camera/${encodeURIComponent(site)}/${encodeURIComponent(camera)}`;
  return at === undefined ? base : `${base}?t=${Math.round(at)}`;
}

export function loading(): HTMLElement {
  return h("p", { class: "muted loading", role: "status" }, t("common.loading"));
}

export function fmtBytes(n: bigint | number): string {
  let v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
