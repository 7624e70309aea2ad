// The page: picks an image (file input, camera, drop), hands it to worker.js, shows progress,
// the bicubic/model comparison and the PNG download. Address options (all optional):
//   ?tile=N       LR tile core in pixels (0 = whole image in one run; default: config.json)
//   ?maxPixels=N  largest accepted input, in pixels (default: config.json max_pixels)
//   ?threads=N    WASM threads (default: all cores when the page is cross-origin isolated)
//   ?scale=S      which model of a multi-scale bundle (MDSR)
//   ?input=auto|clean|jpeg
//                 which model, where the bundle carries a JPEG-robust one beside the main model
//                 (config.json input_type "jpeg"): auto (default) picks it, per image, for a JPEG
//                 (camera photos included) whose estimated quality (from its quantization table)
//                 is <= compressed_quality (90), as edsr-upscale does; clean / jpeg force one
//                 (also the Input selector). The result line and window.edsr.lastStats (model,
//                 why) say which model ran and why.
//   ?sw=0         no service worker (no offline copy, single-threaded)
import { chooseModel, COMPRESSED_QUALITY, formatBytes, formatPixels } from './lib.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const intParam = (name) => {
  const v = params.get(name);
  if (v === null || v === '') return null;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : null;
};

const INPUT_TYPES = ['auto', 'clean', 'jpeg'];
const app = (window.edsr = {
  state: 'starting', lastStats: null, error: null, threads: 1, isolated: false, progressLog: [],
  inputType: INPUT_TYPES.includes(params.get('input')) ? params.get('input') : 'auto',
});
// model: the scale's main model (input_type "clean"); jpegModel: its JPEG-robust one, or null
let cfg, model, jpegModel = null, worker, jobId = 0, current = null, downloadUrl = null;

function setState(s) {
  app.state = s;
  document.body.dataset.state = s;
}

function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = !text;
  app.error = text || null;
}

let noted = false;
function note(text) {
  noted = true;
  $('footer').textContent = text;
}

async function ensureServiceWorker() {
  // The service worker keeps an offline copy and adds COOP/COEP headers, which make the page
  // cross-origin isolated (SharedArrayBuffer → WASM threads) on any static host. Returns true
  // when the page is about to reload to come under its control.
  if (params.get('sw') === '0') return false;
  if (!('serviceWorker' in navigator)) {
    note('No offline copy: service workers need https (or localhost). Running single-threaded.');
    return false;
  }
  let reg;
  try {
    reg = await navigator.serviceWorker.register('sw.js');
  } catch (e) {
    note(`No offline copy (service worker refused: ${e.message}). Running single-threaded.`);
    return false;
  }
  const reloadKey = 'edsr-sw-reloaded';
  if (navigator.serviceWorker.controller) {
    if (!self.crossOriginIsolated && !sessionStorage.getItem(reloadKey)) {
      sessionStorage.setItem(reloadKey, '1'); // e.g. a hard reload bypassed the worker
      location.reload();
      return true;
    }
    return false;
  }
  $('model-info').textContent = 'Saving an offline copy of the model and runtime…';
  const installed = await new Promise((resolve) => {
    const sw = reg.installing || reg.waiting || reg.active;
    if (!sw || sw.state === 'activated') return resolve(true);
    sw.addEventListener('statechange', () => {
      if (sw.state === 'activated') resolve(true);
      if (sw.state === 'redundant') resolve(false);
    });
  });
  if (!installed) {
    note('Could not save an offline copy; running without it.');
    return false;
  }
  if (!sessionStorage.getItem(reloadKey)) {
    sessionStorage.setItem(reloadKey, '1');
    location.reload(); // now under the service worker: isolated, threads available
    return true;
  }
  return false;
}

function startWorker() {
  if (worker) worker.terminate();
  worker = new Worker('worker.js', { type: 'module' });
  worker.onmessage = (ev) => onWorkerMessage(ev.data);
  worker.onerror = (ev) => {
    ev.preventDefault();
    failJob(`The upscaler stopped unexpectedly (${ev.message || 'worker error'}). Try a smaller image or tile.`);
    startWorker();
  };
}

function failJob(text) {
  current = null;
  $('progress-box').hidden = true;
  showError(text);
  setState('ready');
}

function call(type, extra) {
  return { type, id: ++jobId, cfg, model, threads: app.threads, ...extra };
}

function onWorkerMessage(msg) {
  if (msg.type === 'ready') {
    app.threads = msg.threads;
    const names = jpegModel
      ? `${model.name} + ${jpegModel.name} (for JPEGs of quality ≤ ${cfg.compressed_quality ?? COMPRESSED_QUALITY})`
      : model.name;
    $('model-info').textContent =
      `${names} · ×${model.scale} · ONNX Runtime Web ${cfg.runtime.version} (WASM, ` +
      `${msg.threads} thread${msg.threads === 1 ? '' : 's'}) · tiles of ${app.tile || 'whole image'}` +
      `${app.tile ? ` + ${model.overlap} px context` : ''} · up to ${formatPixels(app.maxPixels)}`;
    setState('ready');
    return;
  }
  if (msg.type === 'error' && !current) { // the model or runtime failed to load
    showError(`Cannot start the upscaler: ${msg.message}`);
    setState('error');
    return;
  }
  if (!current || msg.id !== current.id) return; // a cancelled job
  if (msg.type === 'progress') {
    const bar = $('progress');
    bar.max = msg.total || 1;
    bar.value = msg.done;
    if (msg.phase === 'upscaling') app.progressLog.push([msg.done, msg.total]);
    $('progress-text').textContent =
      msg.phase === 'upscaling' ? `Upscaling: tile ${msg.done} of ${msg.total}` : `${msg.phase[0].toUpperCase()}${msg.phase.slice(1)}…`;
  } else if (msg.type === 'bicubic') {
    drawTo($('before'), msg.rgba, msg.width, msg.height);
    current.inSize = [msg.inWidth, msg.inHeight];
  } else if (msg.type === 'result') {
    drawTo($('after'), msg.rgba, msg.width, msg.height);
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(msg.png);
    const a = $('download');
    a.href = downloadUrl;
    a.download = `${current.stem}_x${model.scale}.png`;
    const s = msg.stats;
    app.lastStats = { ...s, width: msg.width, height: msg.height };
    $('stats').textContent =
      `${s.model} (${s.why}) · ` +
      `${current.inSize[0]}×${current.inSize[1]} → ${msg.width}×${msg.height} · ${s.tiles} tile${s.tiles === 1 ? '' : 's'} · ` +
      `model ${(s.modelMs / 1000).toFixed(2)} s · total ${(s.totalMs / 1000).toFixed(2)} s`;
    $('progress-box').hidden = true;
    $('result').hidden = false;
    current = null;
    setSplit(Number($('slider').value));
    setState('done');
  } else if (msg.type === 'error') {
    failJob(msg.message);
  }
}

function drawTo(canvas, rgba, w, h) {
  canvas.width = w;
  canvas.height = h;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), w, h), 0, 0);
}

function upscale(file) {
  if (!file || !model) return;
  if (current) return; // one at a time; Cancel first
  showError('');
  const stem = (file.name || 'image').replace(/\.[^.]*$/, '') || 'image';
  current = { id: 0, stem };
  app.progressLog = [];
  // the worker picks the model from the file's header (chooseModel) and tiles for that model
  const msg = call('upscale', { file, scale: model.scale, inputType: app.inputType, tile: app.tileParam,
    maxPixels: app.maxPixels });
  current.id = msg.id;
  $('progress').value = 0;
  $('progress-text').textContent = 'Reading the image…';
  $('progress-box').hidden = false;
  setState('busy');
  worker.postMessage(msg);
}

function setSplit(pct) {
  $('after-clip').style.clipPath = `inset(0 0 0 ${pct}%)`;
  $('divider').style.left = `${pct}%`;
}

function wireUi() {
  for (const id of ['file', 'camera']) {
    $(id).addEventListener('change', (ev) => {
      const f = ev.target.files && ev.target.files[0];
      ev.target.value = ''; // the same file can be chosen again
      upscale(f);
    });
  }
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (f) upscale(f);
    else showError('Nothing to upscale: drop an image file.');
  });
  // dropping outside the box must not navigate away from the page
  window.addEventListener('dragover', (ev) => ev.preventDefault());
  window.addEventListener('drop', (ev) => ev.preventDefault());
  $('cancel').addEventListener('click', () => {
    startWorker();
    failJob('Cancelled.');
    worker.postMessage(call('init'));
    setState('starting');
  });
  $('slider').addEventListener('input', (ev) => setSplit(Number(ev.target.value)));
  const compare = $('compare');
  const drag = (ev) => {
    const r = compare.getBoundingClientRect();
    const pct = Math.min(100, Math.max(0, ((ev.clientX - r.left) / r.width) * 100));
    $('slider').value = String(pct);
    setSplit(pct);
  };
  compare.addEventListener('pointerdown', (ev) => { compare.setPointerCapture(ev.pointerId); drag(ev); });
  compare.addEventListener('pointermove', (ev) => { if (compare.hasPointerCapture(ev.pointerId)) drag(ev); });
  $('zoom').addEventListener('change', (ev) => $('viewport').classList.toggle('zoom', ev.target.checked));
}

async function main() {
  wireUi();
  try {
    const res = await fetch('config.json');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    cfg = await res.json();
  } catch (e) {
    showError(`Cannot load config.json (${e.message}). Serve this folder over http(s), e.g. python -m http.server.`);
    setState('error');
    return;
  }
  if (await ensureServiceWorker()) return;
  const wanted = intParam('scale');
  const scales = [...new Set(cfg.models.map((m) => m.scale))];
  const scale = scales.includes(wanted) ? wanted : scales[0];
  model = chooseModel(cfg.models, scale, null, 'clean').model;
  const robust = chooseModel(cfg.models, scale, null, 'jpeg').model;
  jpegModel = robust !== model ? robust : null;
  const buttons = $('drop').querySelector('.buttons');
  if (jpegModel) {
    const sel = document.createElement('select');
    sel.id = 'input-type';
    sel.title = 'Which model: auto picks the JPEG-robust one for compressed JPEGs';
    for (const [value, text] of [['auto', 'Input: auto'], ['clean', 'Input: clean'], ['jpeg', 'Input: JPEG']]) {
      sel.add(new Option(text, value, false, value === app.inputType));
    }
    sel.addEventListener('change', () => {
      app.inputType = sel.value;
      if (sel.value === 'auto') params.delete('input'); else params.set('input', sel.value);
      const query = params.toString();
      history.replaceState(null, '', `${location.pathname}${query ? `?${query}` : ''}`);
    });
    buttons.prepend(sel);
  }
  if (scales.length > 1) {
    const sel = document.createElement('select');
    sel.id = 'scale';
    for (const s of scales) sel.add(new Option(`×${s}`, String(s), false, s === scale));
    sel.addEventListener('change', () => { params.set('scale', sel.value); location.search = params.toString(); });
    buttons.prepend(sel);
  }
  app.isolated = !!self.crossOriginIsolated;
  const cores = navigator.hardwareConcurrency || 1;
  app.threads = intParam('threads') || (app.isolated ? Math.min(cores, 8) : 1);
  app.tileParam = intParam('tile'); // null: each model's own tile (config.json)
  app.tile = app.tileParam ?? model.tile;
  app.maxPixels = intParam('maxPixels') || cfg.max_pixels;
  startWorker();
  worker.postMessage(call('init'));
  if (!noted) {
    const files = [model, jpegModel].filter(Boolean).map((m) => `${m.file} (${formatBytes(m.size_bytes)})`);
    $('footer').textContent =
      `Model${files.length > 1 ? 's' : ''} ${files.join(', ')}, ONNX Runtime Web ${cfg.runtime.version}. ` +
      (app.isolated ? 'Offline copy saved; multi-threaded.' : 'Single-threaded (page not cross-origin isolated).');
  }
}

main().catch((e) => { showError(`The page failed to start: ${e.message || e}`); setState('error'); });
