import { defineConfig } from "vite";

// The built files are served by kordon itself (crates/console), same origin as gRPC-Web.
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    modulePreload: { polyfill: false },
  },
  server: {
    // `npm run dev`: forward gRPC-Web and HLS to a local kordon (standalone's HTTP listener).
    proxy: process.env.KORDON_HTTP
      ? { "^/(kordon\\.|v1/)": { target: process.env.KORDON_HTTP, changeOrigin: false } }
      : undefined,
  },
});
