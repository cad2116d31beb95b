// Plays storage's HLS playlists in a <video>: hls.js (light build, loaded on demand) where
// Media Source Extensions exist, else the browser's own HLS. Knows the wall-clock time shown
// (EXT-X-PROGRAM-DATE-TIME).
import type HlsType from "hls.js";

export class Player {
  private hls: HlsType | null = null;
  private base = 0; // wall-clock ms at currentTime 0 when PDT is not available
  private rate = 1;
  constructor(readonly video: HTMLVideoElement) {}

  /** Plays `url`, starting `offset` seconds into it (-1: the live edge). */
  async load(url: string, offset: number, base: number): Promise<void> {
    this.destroy();
    this.base = base;
    const v = this.video;
    const mod = await import("hls.js/light");
    const Hls = mod.default;
    if (Hls.isSupported()) {
      const hls = new Hls({ startPosition: offset, enableWorker: true, backBufferLength: 60 });
      this.hls = hls;
      hls.on(Hls.Events.ERROR, (_e, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
        else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else v.dispatchEvent(new CustomEvent("playererror", { detail: data.details }));
      });
      hls.loadSource(url);
      hls.attachMedia(v);
    } else if (v.canPlayType("application/vnd.apple.mpegurl")) {
      v.src = url;
      v.addEventListener(
        "loadedmetadata",
        () => {
          if (offset >= 0) v.currentTime = offset;
        },
        { once: true },
      );
    } else {
      throw new Error("HLS playback is not supported by this browser");
    }
    this.setRate(this.rate);
    v.addEventListener("loadedmetadata", () => this.setRate(this.rate), { once: true });
    await v.play().catch(() => undefined);
  }

  setRate(r: number): void {
    this.rate = r;
    this.video.defaultPlaybackRate = r;
    this.video.playbackRate = r;
  }

  /** Wall-clock time of the frame shown, ms; undefined before anything plays. */
  wallClock(): number | undefined {
    const d = this.hls?.playingDate;
    if (d) return d.getTime();
    const v = this.video as HTMLVideoElement & { getStartDate?: () => Date };
    const sd = v.getStartDate?.();
    if (sd && !Number.isNaN(sd.getTime()) && sd.getTime() > 0) return sd.getTime() + v.currentTime * 1000;
    if (!this.base) return undefined;
    return this.base + v.currentTime * 1000;
  }

  destroy(): void {
    this.hls?.destroy();
    this.hls = null;
    this.video.removeAttribute("src");
    this.video.load();
  }
}
