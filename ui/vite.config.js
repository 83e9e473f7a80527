// Vite: the bundle the agent embeds and serves at /ui/ (ui/dist).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // One self-contained bundle: no inline scripts (the agent's CSP is `default-src 'self'`).
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1500,
    sourcemap: false,
    // BULKHEAD_UI_NOMINIFY=1: readable names in CPU profiles.
    minify: process.env.BULKHEAD_UI_NOMINIFY ? false : 'esbuild',
  },
  server: {
    // `npm run dev`: proxies the API to a mock (npm run mock) or an agent's UI listener.
    proxy: { '/v1': process.env.BULKHEAD_UI_API || 'http://127.0.0.1:8719' },
  },
});
