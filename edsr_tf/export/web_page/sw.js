// Service worker: an offline copy of the whole bundle, and the COOP/COEP headers that make the
// page cross-origin isolated (SharedArrayBuffer, hence WASM threads) on any static host.
// The exporter fills in VERSION (a hash of every file) and FILES; a re-export changes VERSION,
// so browsers fetch the new copy and drop the old one.
const VERSION = '__VERSION__';
const FILES = __FILES__;
const CACHE = `edsr-web-${VERSION}`;
const TYPES = { js: 'text/javascript', wasm: 'application/wasm', json: 'application/json',
  html: 'text/html; charset=utf-8', css: 'text/css', onnx: 'application/octet-stream' };

self.addEventListener('install', (ev) => {
  ev.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(FILES.map((f) => new Request(f, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith('edsr-web-') && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

function isolated(res, path) {
  if (!res || res.status === 0 || res.type === 'opaqueredirect') return res;
  const headers = new Headers(res.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Resource-Policy', 'same-origin');
  const ext = path.split('.').pop();
  if (TYPES[ext]) headers.set('Content-Type', TYPES[ext]); // whatever the host says
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin) return;
  ev.respondWith((async () => {
    const cache = await caches.open(CACHE);
    let path = url.pathname;
    if (path.endsWith('/')) path += 'index.html';
    const hit = await cache.match(req, { ignoreSearch: true }) ||
      (req.mode === 'navigate' ? await cache.match(new URL('index.html', self.registration.scope).href) : undefined);
    if (hit) return isolated(hit, path);
    return isolated(await fetch(req), path);
  })());
});
