// Pure helpers shared by the page and its worker (no DOM, no runtime): exact-overlap tiling
// (the same split as edsr_tf.inference.axis_tiles), MATLAB bicubic upscaling (the same as
// edsr_tf.imresize for integer scales, uint8 in and out), image-header sniffing so an
// oversized photo is refused before it is decoded, and the model choice per image (a JPEG's
// quality from its quantization table: the JPEG-robust model for compressed ones).

/**
 * Splits an axis of n pixels into cores of `tile` with `overlap` context pixels each side.
 * Mirror of edsr_tf.inference.axis_tiles: one window when the axis fits in one
 * (n <= tile + 2*overlap, or tile <= 0); border windows are shifted inwards, not shrunk,
 * so every window of an axis has the same length.
 * @returns {{winStart:number, winLen:number, coreStart:number, coreLen:number}[]}
 */
export function axisTiles(n, tile, overlap) {
  if (!(n >= 1)) throw new Error(`empty axis (${n} px)`);
  if (!tile || tile <= 0 || n <= tile + 2 * overlap) {
    return [{ winStart: 0, winLen: n, coreStart: 0, coreLen: n }];
  }
  if (overlap < 0) throw new Error(`tile overlap must be >= 0, got ${overlap}`);
  const winLen = tile + 2 * overlap;
  const tiles = [];
  for (let core = 0; core < n; core += tile) {
    const coreLen = Math.min(tile, n - core);
    const winStart = Math.min(Math.max(core - overlap, 0), n - winLen);
    tiles.push({ winStart, winLen, coreStart: core, coreLen });
  }
  return tiles;
}

/** All (row tile, column tile) pairs of an h x w image, row-major (edsr_tf.inference.tile_grid). */
export function tileGrid(h, w, tile, overlap) {
  const rows = axisTiles(h, tile, overlap);
  const cols = axisTiles(w, tile, overlap);
  const grid = [];
  for (const ty of rows) for (const tx of cols) grid.push([ty, tx]);
  return grid;
}

function cubic(x) {
  const a = Math.abs(x);
  const a2 = a * a;
  const a3 = a2 * a;
  if (a <= 1) return 1.5 * a3 - 2.5 * a2 + 1;
  if (a <= 2) return -0.5 * a3 + 2.5 * a2 - 4 * a + 2;
  return 0;
}

/** MATLAB's contributions() for an integer upscale: per output pixel, input indices and weights. */
export function contributions(inLen, scale) {
  const outLen = inLen * scale;
  const taps = 6; // ceil(kernel width 4) + 2, as MATLAB; zero-weight taps are harmless
  const idx = new Int32Array(outLen * taps);
  const wts = new Float64Array(outLen * taps);
  for (let x = 1; x <= outLen; x++) {
    const u = x / scale + 0.5 * (1 - 1 / scale);
    const left = Math.floor(u - 2);
    let sum = 0;
    for (let k = 0; k < taps; k++) {
      const j = left + k; // 1-based, may fall outside [1, inLen]
      const w = cubic(u - j);
      let z = (((j - 1) % (2 * inLen)) + 2 * inLen) % (2 * inLen); // symmetric padding
      if (z >= inLen) z = 2 * inLen - 1 - z;
      idx[(x - 1) * taps + k] = z;
      wts[(x - 1) * taps + k] = w;
      sum += w;
    }
    for (let k = 0; k < taps; k++) wts[(x - 1) * taps + k] /= sum;
  }
  return { idx, wts, taps, outLen };
}

const roundU8 = (v) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.floor(v + 0.5)); // MATLAB uint8()

/**
 * MATLAB imresize(img, scale, 'bicubic') of the RGB channels of an RGBA uint8 image for an
 * integer scale: rows first, rounded to uint8 between the passes, as edsr_tf.imresize does.
 * Returns RGBA (alpha 255) of (h*scale) x (w*scale).
 */
export function bicubicUpscale(rgba, w, h, scale) {
  const mid = resamplePass(rgba, 4, w, h * scale, w, contributions(h, scale), true); // RGB
  return resamplePass(mid, 3, w, h * scale, w * scale, contributions(w, scale), false); // RGBA
}

/**
 * One pass of a separable resize: the RGB of `src` (`inCh` channels a pixel, rows `w` pixels
 * wide) resampled along its columns (`vertical`) or rows by the taps of `c`, into an H x W
 * image rounded to uint8: RGB after a vertical pass, RGBA (alpha 255) after a horizontal one.
 */
function resamplePass(src, inCh, w, H, W, c, vertical) {
  const outCh = vertical ? 3 : 4;
  const out = new Uint8ClampedArray(H * W * outCh);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const t = (vertical ? y : x) * c.taps; // this output pixel's taps
      const base = vertical ? x : y * w; // source pixel of index 0 along the resampled axis
      const step = vertical ? w : 1;
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < c.taps; k++) {
        const wt = c.wts[t + k];
        if (wt === 0) continue;
        const p = (base + c.idx[t + k] * step) * inCh;
        r += wt * src[p]; g += wt * src[p + 1]; b += wt * src[p + 2];
      }
      const q = (y * W + x) * outCh;
      out[q] = roundU8(r); out[q + 1] = roundU8(g); out[q + 2] = roundU8(b);
      if (outCh === 4) out[q + 3] = 255;
    }
  }
  return out;
}

/**
 * Width and height from the header of a PNG, GIF, BMP, JPEG or WebP file (its first bytes),
 * or null when the format is not recognised (the caller then decodes and checks after).
 * @param {Uint8Array} b
 */
export function imageSize(b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (o, n) => String.fromCharCode(...b.subarray(o, o + n));
  if (b.length >= 24 && b[0] === 0x89 && ascii(1, 3) === 'PNG') {
    return { format: 'PNG', width: dv.getUint32(16), height: dv.getUint32(20) };
  }
  if (b.length >= 10 && ascii(0, 3) === 'GIF') {
    return { format: 'GIF', width: dv.getUint16(6, true), height: dv.getUint16(8, true) };
  }
  if (b.length >= 26 && ascii(0, 2) === 'BM') {
    return { format: 'BMP', width: Math.abs(dv.getInt32(18, true)), height: Math.abs(dv.getInt32(22, true)) };
  }
  if (b.length >= 30 && ascii(0, 4) === 'RIFF' && ascii(8, 4) === 'WEBP') {
    const kind = ascii(12, 4);
    if (kind === 'VP8 ') return { format: 'WebP', width: dv.getUint16(26, true) & 0x3fff, height: dv.getUint16(28, true) & 0x3fff };
    if (kind === 'VP8L') {
      const v = dv.getUint32(21, true);
      return { format: 'WebP', width: (v & 0x3fff) + 1, height: ((v >> 14) & 0x3fff) + 1 };
    }
    if (kind === 'VP8X') {
      const w = (b[24] | (b[25] << 8) | (b[26] << 16)) + 1;
      const h = (b[27] | (b[28] << 8) | (b[29] << 16)) + 1;
      return { format: 'WebP', width: w, height: h };
    }
    return null;
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let o = 2;
    while (o + 9 < b.length) {
      if (b[o] !== 0xff) { o++; continue; }
      const m = b[o + 1];
      if (m === 0xff) { o++; continue; }
      if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { o += 2; continue; }
      const len = dv.getUint16(o + 2);
      const sof = m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
      if (sof) return { format: 'JPEG', width: dv.getUint16(o + 7), height: dv.getUint16(o + 5) };
      o += 2 + len;
    }
    return null;
  }
  return null;
}

/** A byte count in the unit edsr_tf uses everywhere (powers of 1024: KiB, MiB, GiB). */
export function formatBytes(n) {
  const units = [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]];
  for (const [unit, size] of units) if (n >= size) return `${(n / size).toFixed(1)} ${unit}`;
  return `${n} bytes`;
}

/** "12.3 MP" / "850 kP" style pixel counts for messages. */
export function formatPixels(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MP` : `${Math.round(n / 1e3)} kP`;
}

// ------------------------------------------------------------------------------------------
// Which model for which image: the JPEG-robust model for compressed JPEGs, as edsr-upscale
// (edsr_tf.upscale.choose_shipped_model, edsr_tf.jpeg.estimate_quality) does.

/** At or below this estimated JPEG quality an input counts as compressed (edsr_tf.jpeg.COMPRESSED_QUALITY). */
export const COMPRESSED_QUALITY = 90;

/** The IJG (libjpeg) standard luminance quantization table, natural (row-major) order. */
const IJG_LUMINANCE = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
  14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
  18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/** ZIGZAG[k]: the natural (row-major) index of the k-th coefficient in a DQT segment's order. */
const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
  58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/** libjpeg's jpeg_quality_scaling of the standard luminance table (baseline: clipped to 1..255). */
export function ijgTable(quality) {
  const scale = quality < 50 ? Math.floor(5000 / quality) : 200 - 2 * quality;
  return IJG_LUMINANCE.map((v) => Math.min(255, Math.max(1, Math.floor((v * scale + 50) / 100))));
}

/**
 * The luminance quantization table (table id 0) of a JPEG's header, 64 values in natural
 * order, or null for a non-JPEG or a header without one. Reads DQT segments (8- or 16-bit
 * precision) up to the first scan.
 * @param {Uint8Array} b the file's first bytes
 */
export function jpegLuminanceTable(b) {
  if (!(b.length >= 4 && b[0] === 0xff && b[1] === 0xd8)) return null;
  let o = 2;
  while (o + 3 < b.length) {
    if (b[o] !== 0xff) { o++; continue; }
    const m = b[o + 1];
    if (m === 0xff) { o++; continue; } // fill byte
    if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { o += 2; continue; } // no length
    if (m === 0xda || m === 0xd9) return null; // scan (or end) reached: no table 0 before it
    const len = (b[o + 2] << 8) | b[o + 3];
    const end = o + 2 + len;
    if (m === 0xdb) {
      let p = o + 4;
      while (p < end && p < b.length) {
        const precision = b[p] >> 4, id = b[p] & 15, size = precision ? 128 : 64;
        if (p + 1 + size > Math.min(end, b.length)) return null; // truncated
        if (id === 0) {
          const table = new Array(64);
          for (let k = 0; k < 64; k++) {
            table[ZIGZAG[k]] = precision ? (b[p + 1 + 2 * k] << 8) | b[p + 2 + 2 * k] : b[p + 1 + k];
          }
          return table;
        }
        p += 1 + size;
      }
    }
    o = end;
  }
  return null;
}

/**
 * The IJG quality (1..100) a JPEG was saved with, estimated from its luminance quantization
 * table: the quality whose scaled standard table is nearest (sum of absolute differences, ties
 * to the lowest quality), exactly as edsr_tf.jpeg.estimate_quality. null for a non-JPEG or a
 * header without the table.
 * @param {Uint8Array} bytes the file's first bytes (the header; 256 KiB is plenty)
 */
export function jpegQuality(bytes) {
  const table = jpegLuminanceTable(bytes);
  if (!table) return null;
  let best = null, bestErr = Infinity;
  for (let q = 1; q <= 100; q++) {
    const t = ijgTable(q);
    let err = 0;
    for (let i = 0; i < 64; i++) err += Math.abs(t[i] - table[i]);
    if (err < bestErr) { best = q; bestErr = err; }
  }
  return best;
}

/**
 * The model for one image, and why: `{model, why}`. `models`: config.json's models; `scale`: the
 * page's scale; `quality`: jpegQuality of the file (null: not a JPEG); `inputType`: 'auto'
 * (default), or 'clean' / 'jpeg' (?input= in the address). The rule of edsr-upscale: a JPEG of
 * estimated quality <= `compressedQuality` gets the scale's JPEG-robust model (input_type
 * "jpeg") where the bundle has one; anything else gets its main model (input_type "clean").
 */
export function chooseModel(models, scale, quality, inputType = 'auto', compressedQuality = COMPRESSED_QUALITY) {
  const ofScale = models.filter((m) => m.scale === scale);
  const clean = ofScale.find((m) => (m.input_type || 'clean') === 'clean') || ofScale[0];
  if (!clean) throw new Error(`no ×${scale} model in this page`);
  const robust = ofScale.find((m) => m.input_type === 'jpeg');
  if (inputType === 'clean') return { model: clean, why: '?input=clean' };
  let why;
  if (inputType === 'jpeg') {
    why = '?input=jpeg';
  } else {
    if (quality === null || quality === undefined) return { model: clean, why: 'not a JPEG' };
    if (quality > compressedQuality) {
      return { model: clean, why: `JPEG of estimated quality ${quality} > ${compressedQuality}, barely compressed` };
    }
    why = `JPEG of estimated quality ${quality} <= ${compressedQuality}`;
  }
  if (!robust) return { model: clean, why: `${why}, but this page has no JPEG-robust ×${scale} model` };
  return { model: robust, why: `${why}: the JPEG-robust model` };
}
