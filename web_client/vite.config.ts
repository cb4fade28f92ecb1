import { defineConfig } from 'vite';

// `npm run dev` proxies the API and the socket to a running `python -m consultd serve`.
// CONSULTD_URL overrides where that server listens.
const backend = process.env['CONSULTD_URL'] ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/api': { target: backend, changeOrigin: false },
      '/healthz': { target: backend },
      '/socket.io': { target: backend, ws: true },
    },
  },
});
