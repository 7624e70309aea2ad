// Module worker: decodes the image, picks the model for it (the JPEG-robust one for a
// compressed JPEG, where the bundle has one: lib.js chooseModel), runs it tile by tile with ONNX
// Runtime Web (WASM), and makes the bicubic baseline and the PNG. Everything heavy happens here,
// so the page stays responsive; the page can terminate this worker at any time (Cancel).
import * as ort from './ort/ort.wasm.min.js';
import { bicubicUpscale, chooseModel, COMPRESSED_QUALITY, formatPixels, imageSize, jpegQuality, tileGrid } from './lib.js';

// One session per model file (and thread count): a bundle's second model is loaded once, on
// the first image that needs it, and kept.
const sessions = new Map();

const post = (msg, transfer) => self.postMessage(msg, transfer || []);

class UserError extends Error {}

async function loadSession(cfg, model, threads) {
  const key = `${model.file}|${threads}`;
  if (sessions.has(key)) return sessions.get(key);
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = {
    mjs: new URL('./ort/ort-wasm-simd-threaded.js', import.meta.url).href,
    wasm: new URL('./ort/ort-wasm-simd-threaded.wasm', import.meta.url).href,
  };
  const res = await fetch(new URL(model.file, new URL('./', import.meta.url)));
  if (!res.ok) throw new Error(`cannot load the model ${model.file} (HTTP ${res.status})`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  sessions.set(key, session);
  return session;
}

async function decode(file, maxPixels) {
  const head = new Uint8Array(await file.slice(0, 1 << 18).arrayBuffer());
  const sniffed = imageSize(head);
  const limitMsg = (w, h) =>
    `“${file.name}” is ${w}×${h} = ${formatPixels(w * h)}; this page accepts at most ` +
    `${formatPixels(maxPixels)} (max_pixels in config.json, or ?maxPixels= in the address).`;
  if (sniffed && sniffed.width * sniffed.height > maxPixels) throw new UserError(limitMsg(sniffed.width, sniffed.height));
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new UserError(
      `“${file.name}” is not an image this browser can read` +
        (file.type ? ` (type ${file.type})` : '') + '. Use a PNG, JPEG, WebP, GIF or BMP photo.');
  }
  const { width, height } = bitmap;
  if (width * height > maxPixels) { bitmap.close(); throw new UserError(limitMsg(width, height)); }
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { width, height, rgba: ctx.getImageData(0, 0, width, height).data, quality: jpegQuality(head) };
}

async function pngOf(rgba, w, h) {
  const canvas = new OffscreenCanvas(w, h);
  canvas.getContext('2d').putImageData(new ImageData(rgba, w, h), 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}

async function upscale(msg) {
  const { id, file, cfg, scale, inputType, threads, maxPixels } = msg;
  const t0 = performance.now();
  post({ type: 'progress', id, phase: 'decoding', done: 0, total: 1 });
  const img = await decode(file, maxPixels);
  const { width: w, height: h, rgba, quality } = img;
  const { model, why } = chooseModel(cfg.models, scale, quality, inputType, cfg.compressed_quality ?? COMPRESSED_QUALITY);
  const tile = msg.tile ?? model.tile, overlap = model.overlap; // ?tile= else the model's own
  post({ type: 'progress', id, phase: 'loading model', done: 0, total: 1 });
  const sess = await loadSession(cfg, model, threads);
  const tLoaded = performance.now();

  const W = w * scale, H = h * scale;
  const bicubic = bicubicUpscale(rgba, w, h, scale);
  post({ type: 'bicubic', id, width: W, height: H, inWidth: w, inHeight: h, rgba: bicubic }, [bicubic.buffer]);

  const grid = tileGrid(h, w, tile, overlap);
  const out = new Uint8ClampedArray(W * H * 4);
  const inName = sess.inputNames[0], outName = sess.outputNames[0];
  let modelMs = 0;
  post({ type: 'progress', id, phase: 'upscaling', done: 0, total: grid.length });
  for (let i = 0; i < grid.length; i++) {
    const [ty, tx] = grid[i];
    const wh = ty.winLen, ww = tx.winLen;
    const x = new Float32Array(wh * ww * 3);
    for (let yy = 0; yy < wh; yy++) {
      let p = ((ty.winStart + yy) * w + tx.winStart) * 4, q = yy * ww * 3;
      for (let xx = 0; xx < ww; xx++, p += 4, q += 3) { x[q] = rgba[p]; x[q + 1] = rgba[p + 1]; x[q + 2] = rgba[p + 2]; }
    }
    const t = performance.now();
    const result = await sess.run({ [inName]: new ort.Tensor('float32', x, [1, wh, ww, 3]) });
    modelMs += performance.now() - t;
    const y = result[outName];
    const [, oh, ow] = y.dims;
    if (oh !== wh * scale || ow !== ww * scale) throw new Error(`model output ${y.dims} is not x${scale} of ${wh}x${ww}`);
    const data = y.data;
    // keep only the core of the window: rows/cols (core - window start) * scale onwards
    const oy = (ty.coreStart - ty.winStart) * scale, ox = (tx.coreStart - tx.winStart) * scale;
    const ch = ty.coreLen * scale, cw = tx.coreLen * scale;
    for (let yy = 0; yy < ch; yy++) {
      let p = ((oy + yy) * ow + ox) * 3, q = ((ty.coreStart * scale + yy) * W + tx.coreStart * scale) * 4;
      for (let xx = 0; xx < cw; xx++, p += 3, q += 4) {
        // the graph clips to [0, 255]; round half up like edsr_tf.metrics.quantize
        out[q] = Math.floor(data[p] + 0.5); out[q + 1] = Math.floor(data[p + 1] + 0.5);
        out[q + 2] = Math.floor(data[p + 2] + 0.5); out[q + 3] = 255;
      }
    }
    y.dispose && y.dispose();
    post({ type: 'progress', id, phase: 'upscaling', done: i + 1, total: grid.length });
  }
  post({ type: 'progress', id, phase: 'encoding PNG', done: grid.length, total: grid.length });
  const png = await pngOf(out, W, H);
  const t1 = performance.now();
  post({
    type: 'result', id, width: W, height: H, rgba: out, png,
    stats: {
      tiles: grid.length, tile, overlap, threads, modelMs, totalMs: t1 - t0, loadMs: tLoaded - t0,
      model: model.name, why, quality, inputType,
      window: grid.length ? [grid[0][0].winLen, grid[0][1].winLen] : null,
    },
  }, [out.buffer]);
}

self.onmessage = async (ev) => {
  const msg = ev.data;
  try {
    if (msg.type === 'init') {
      await loadSession(msg.cfg, msg.model, msg.threads);
      post({ type: 'ready', id: msg.id, threads: ort.env.wasm.numThreads, ortVersion: ort.env.versions?.web || '' });
    } else if (msg.type === 'upscale') {
      await upscale(msg);
    }
  } catch (e) {
    const user = e instanceof UserError;
    let text = (e && e.message) || String(e);
    if (!user && /memory|allocation|out of bounds/i.test(text)) {
      text = `ran out of memory (${text}); try a smaller tile, e.g. ?tile=64 in the address`;
    }
    post({ type: 'error', id: msg.id, user, message: text });
  }
};
