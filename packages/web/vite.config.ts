// The portal (index.html, served at /) and the operator console
// (console/index.html, served at /console/), built to dist/ by
// scripts/build-web.sh. No inline scripts: the server's CSP forbids them.
import { resolve } from "node:path";
import { defineConfig } from "vite";

const root = import.meta.dirname;

export default defineConfig({
  root,
  base: "/",
  publicDir: resolve(root, "public"),
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: resolve(root, "dist"),
    emptyOutDir: true,
    target: "es2022",
    // One module preload polyfill fewer: every supported browser has it, and the CSP needs no inline code.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    rollupOptions: {
      input: { portal: resolve(root, "index.html"), console: resolve(root, "console/index.html") },
    },
  },
});
