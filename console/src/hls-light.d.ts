// hls.js ships no typings for its "./light" export: it has the full build's API.
declare module "hls.js/light" {
  export * from "hls.js";
  export { default } from "hls.js";
}
