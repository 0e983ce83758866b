// The edgevideo runtime in the browser: a bundle's .onnx programs on ONNX Runtime Web (WASM), with the same frame
// sampling, preprocessing, causal state feeding and window aggregation as the Python runtime (sdk/samplers.py,
// sdk/preprocess.py, sdk/classifier.py, whose module docstring is the contract followed here).
//
// Frames are {data, width, height} with 3 (RGB) or 4 (RGBA, as ImageData) bytes per pixel. The resize reproduces
// OpenCV's cv::resize for uint8 images (pixel centres at +0.5, 11-bit fixed-point bilinear weights, float32 area
// sums): bit-exact with the opencv-python build the project pins on x86; the contract tested is one uint8 step
// (tests/test_web.py), since OpenCV itself may round differently on other CPUs.
// Not supported here (as in the native core): the random_k sampler and programs with int8 inputs.
import * as ort from "./ort/ort.wasm.min.mjs";

export class EdgeVideoError extends Error {
  /** kind: "BundleError" | "ConfigError" | "FrameError", the Python runtime's error types. */
  constructor(kind, message) {
    super(message);
    this.name = kind;
  }
}

const fail = (kind, message) => new EdgeVideoError(kind, message);
const f32 = Math.fround;
const now = () => performance.now();

// ------------------------------------------------------------------------------------------------------ sampling
/** One position per segment of [0, length) cut into `count` integer segments, at the segment centre. */
function segmentPicks(count, length) {
  const out = new Array(count);
  if (length < count) {
    for (let i = 0; i < count; i++) out[i] = Math.floor((i + 0.5) * (length / count));
    return out;
  }
  for (let i = 0; i < count; i++) {
    const lo = Math.floor((i * length) / count), hi = Math.floor(((i + 1) * length) / count);
    out[i] = lo + Math.floor(0.5 * (hi - lo));
  }
  return out;
}

const range = (n, start = 0) => Array.from({ length: n }, (_, i) => start + i);

/** sdk.Sampler's deterministic (evaluation) indices. */
export class Sampler {
  constructor(spec) {
    Object.assign(this, { kind: "uniform_segments", frames: 8, stride: 1, of: null, seed: 0 }, spec);
    if (this.kind === "random_k") {
      throw fail("ConfigError", "the random_k sampler needs numpy's generator bit-exactly: not supported in the browser");
    }
  }

  indices(n) {
    if (!(n >= 1)) throw fail("ConfigError", `cannot sample frames from a video with ${n} frames`);
    if (this.kind === "uniform_segments") return segmentPicks(this.frames, n);
    if (this.kind === "dense") {
      const span = (this.frames - 1) * this.stride + 1;
      const start = Math.floor((Math.min(0, n - span) + Math.max(0, n - span)) / 2);
      return range(this.frames).map((i) => Math.min(Math.max(start + this.stride * i, 0), n - 1));
    }
    const grid = this.of === null ? range(n) : segmentPicks(this.of, n);
    return this.gridPositions(grid.length).map((p) => grid[p]);
  }

  gridPositions(g) {
    const k = this.frames;
    if (g < k || this.kind === "uniform_k") return segmentPicks(k, g);
    if (this.kind === "first_k") return range(k);
    if (this.kind === "last_k") return range(k, g - k);
    if (this.kind === "middle_k") return range(k, Math.floor((g - k) / 2));
    if (this.kind === "first_middle_last_k") {
      const nMid = Math.floor(k / 3), nLast = nMid, nFirst = k - nMid - nLast;
      const mid = Math.min(Math.max(Math.floor((g - nMid) / 2), nFirst), g - nLast - nMid);
      return [...range(nFirst), ...range(nMid, mid), ...range(nLast, g - nLast)];
    }
    throw fail("ConfigError", `unknown sampler kind ${this.kind}`);
  }

  /** How many copies of each window position the model needs (0 = drop before any work). */
  copies(window) {
    const out = new Array(window).fill(0);
    for (const i of this.indices(window)) out[i] += 1;
    return out;
  }
}

// ------------------------------------------------------------------------------------------------- preprocessing
/** Python's round(): half to even. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const COEF = 2048; // OpenCV's INTER_RESIZE_COEF_SCALE

/** Bilinear taps of one axis as cv::resize computes them for uint8 images: 11-bit weights; along x a source
 * position outside the image takes the edge pixel alone, along y the two rows are clamped and keep their weights.
 * area=true: INTER_AREA's upscaling taps. */
function linearTaps(src, dst, area, alongX) {
  const scale = src / dst, inv = dst / src;
  const i0 = new Int32Array(dst), i1 = new Int32Array(dst), w0 = new Int32Array(dst), w1 = new Int32Array(dst);
  for (let d = 0; d < dst; d++) {
    let s, f;
    if (area) {
      s = Math.floor(d * scale);
      f = f32((d + 1) - (s + 1) * inv);
      f = f <= 0 ? 0 : f32(f - Math.floor(f));
    } else {
      f = f32((d + 0.5) * scale - 0.5);
      s = Math.floor(f);
      f = f32(f - s);
    }
    if (alongX && s < 0) { s = 0; f = 0; }
    if (alongX && s >= src - 1) { s = src - 1; f = 0; }
    i0[d] = Math.min(Math.max(s, 0), src - 1); i1[d] = Math.min(Math.max(s + 1, 0), src - 1);
    w0[d] = roundHalfEven(f32(1 - f) * COEF); w1[d] = roundHalfEven(f * COEF);
  }
  return { i0, i1, w0, w1 };
}

/** INTER_AREA downscaling weights of one axis: [source index, float32 weight] per output position. */
function areaTaps(src, dst) {
  const scale = src / dst, taps = [];
  for (let d = 0; d < dst; d++) {
    const fs1 = d * scale, fs2 = fs1 + scale, cell = Math.min(scale, src - fs1);
    const s1 = Math.ceil(fs1), s2 = Math.floor(fs2), row = [];
    if (s1 - fs1 > 1e-3) row.push([s1 - 1, f32((s1 - fs1) / cell)]);
    for (let s = s1; s < s2; s++) row.push([s, f32(1 / cell)]);
    if (fs2 - s2 > 1e-3 && s2 < src) row.push([s2, f32(Math.min(Math.min(fs2 - s2, 1), cell) / cell)]);
    taps.push(row);
  }
  return taps;
}

/** Channel c of pixel (x, y) of a frame with `ch` bytes per pixel. */
const at = (frame, ch, x, y, c) => frame.data[(y * frame.width + x) * ch + c];

/** INTER_AREA downscale: rows of float32 weighted sums, then columns, rounded half to even; an exact 2x in both
 * directions is OpenCV's fast path, (sum of 4 + 2) >> 2. */
function resizeArea(frame, ch, nw, nh) {
  const { width: w, height: h } = frame, out = new Uint8Array(nw * nh * 3);
  if (w === 2 * nw && h === 2 * nh) {
    for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) for (let c = 0; c < 3; c++) {
      const sum = at(frame, ch, 2 * x, 2 * y, c) + at(frame, ch, 2 * x + 1, 2 * y, c)
        + at(frame, ch, 2 * x, 2 * y + 1, c) + at(frame, ch, 2 * x + 1, 2 * y + 1, c);
      out[(y * nw + x) * 3 + c] = (sum + 2) >> 2;
    }
    return out;
  }
  const tx = areaTaps(w, nw), ty = areaTaps(h, nh), rows = new Float32Array(h * nw * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < nw; x++) for (let c = 0; c < 3; c++) {
    let sum = 0;
    for (const [xx, wx] of tx[x]) sum = f32(sum + f32(at(frame, ch, xx, y, c) * wx));
    rows[(y * nw + x) * 3 + c] = sum;
  }
  for (let y = 0; y < nh; y++) for (let i = 0; i < nw * 3; i++) {
    let sum = 0;
    for (const [yy, wy] of ty[y]) sum = f32(sum + f32(rows[yy * nw * 3 + i] * wy));
    out[y * nw * 3 + i] = Math.min(255, Math.max(0, roundHalfEven(sum)));
  }
  return out;
}

/** The box [x0, y0, width, height] of a frame resized to (nw, nh), RGB: bit-exact with OpenCV 5's cv::resize of
 * uint8 images on x86 (its vectorised vertical pass: ((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2).
 * Each output pixel depends only on its own taps, so the box equals the same box cut from the whole resized frame. */
export function resize(frame, nw, nh, interpolation = "bilinear", box = [0, 0, nw, nh]) {
  const { width: w, height: h } = frame, ch = channels(frame), [bx, by, bw, bh] = box;
  const area = interpolation === "area";
  if (area && w >= nw && h >= nh) {
    const full = resizeArea(frame, ch, nw, nh), out = new Uint8Array(bw * bh * 3);
    for (let y = 0; y < bh; y++) out.set(full.subarray(((by + y) * nw + bx) * 3, ((by + y) * nw + bx + bw) * 3), y * bw * 3);
    return out;
  }
  const tx = linearTaps(w, nw, area, true), ty = linearTaps(h, nh, area, false), out = new Uint8Array(bw * bh * 3);
  const src = frame.data, stride = w * ch;
  const xa = new Int32Array(bw), xb = new Int32Array(bw), wa = new Int32Array(bw), wb = new Int32Array(bw);
  for (let x = 0; x < bw; x++) {
    xa[x] = tx.i0[bx + x] * ch; xb[x] = tx.i1[bx + x] * ch; wa[x] = tx.w0[bx + x]; wb[x] = tx.w1[bx + x];
  }
  const horizontal = (dst, sy) => {
    const base = sy * stride;
    for (let x = 0, o = 0; x < bw; x++, o += 3) {
      const a = base + xa[x], b = base + xb[x], p = wa[x], q = wb[x];
      dst[o] = src[a] * p + src[b] * q;
      dst[o + 1] = src[a + 1] * p + src[b + 1] * q;
      dst[o + 2] = src[a + 2] * p + src[b + 2] * q;
    }
  };
  let row0 = new Int32Array(bw * 3), row1 = new Int32Array(bw * 3), have0 = -1, have1 = -1;
  for (let y = 0; y < bh; y++) {
    const sy0 = ty.i0[by + y], sy1 = ty.i1[by + y], b0 = ty.w0[by + y], b1 = ty.w1[by + y];
    if (sy0 === have1 && sy0 !== have0) { [row0, row1] = [row1, row0]; [have0, have1] = [have1, have0]; }
    if (sy0 !== have0) { horizontal(row0, sy0); have0 = sy0; }
    if (sy1 !== have1) { horizontal(row1, sy1); have1 = sy1; }
    for (let i = 0, o = y * bw * 3; i < bw * 3; i++) {
      out[o + i] = Math.min(255, (((b0 * (row0[i] >> 4)) >> 16) + ((b1 * (row1[i] >> 4)) >> 16) + 2) >> 2);
    }
  }
  return out;
}

function channels(frame) {
  const n = frame.data.length / (frame.width * frame.height);
  if (n !== 3 && n !== 4) throw fail("FrameError", `a frame must hold RGB or RGBA bytes, got ${frame.data.length} bytes for ${frame.width}x${frame.height}`);
  return n;
}

function checkFrame(frame) {
  if (!frame || !frame.data || !(frame.width >= 1) || !(frame.height >= 1)) {
    throw fail("FrameError", "a frame must be {data, width, height} with RGB or RGBA bytes");
  }
  if (!(frame.data instanceof Uint8Array || frame.data instanceof Uint8ClampedArray)) {
    throw fail("FrameError", "frame data must be a Uint8Array or Uint8ClampedArray");
  }
  channels(frame);
  return frame;
}

/** One input spec's preprocessing (sdk.preprocess.Preprocess minus the value steps the program does itself). */
export class Preprocess {
  constructor(spec, inProgram = ["scale", "normalize"]) {
    this.spec = spec;
    this.size = spec.size;
    this.resizeTo = spec.resize === null || spec.resize === undefined ? spec.size : spec.resize;
    const scale = !inProgram.includes("scale"), normalize = !inProgram.includes("normalize");
    if (normalize && !scale) {
      throw fail("BundleError", "input.in_program has 'scale' without 'normalize': re-export the bundle");
    }
    // sdk.Preprocess.value_affine in float32, then a per-channel table of v * mul + add (bit-exact with Python)
    const s = scale ? f32(spec.scale) : 1;
    const mul = [0, 1, 2].map((c) => (normalize ? f32(s / f32(spec.std[c])) : s));
    const add = [0, 1, 2].map((c) => (normalize ? f32(-f32(spec.mean[c]) / f32(spec.std[c])) : 0));
    this.lut = [0, 1, 2].map((c) => Float32Array.from({ length: 256 }, (_, v) => f32(f32(v * mul[c]) + add[c])));
  }

  /** The centre size x size crop of the frame resized to a shorter side of `resize` (only the crop is resized):
   * uint8 RGB, what tests compare with Python's. */
  crop(frame) {
    checkFrame(frame);
    const { width: w, height: h } = frame, short = this.resizeTo, S = this.size, ch = channels(frame);
    const [nh, nw] = Math.min(w, h) === short ? [h, w] : h <= w
      ? [short, Math.max(short, roundHalfEven((w * short) / h))]
      : [Math.max(short, roundHalfEven((h * short) / w)), short];
    const box = [Math.floor((nw - S) / 2), Math.floor((nh - S) / 2), S, S];
    if (nw !== w || nh !== h) return resize(frame, nw, nh, this.spec.interpolation, box);
    const out = new Uint8Array(S * S * 3);
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let c = 0; c < 3; c++) {
      out[(y * S + x) * 3 + c] = at(frame, ch, box[0] + x, box[1] + y, c);
    }
    return out;
  }

  /** The program's input for one frame: float32 in the spec's layout (CHW or HWC). */
  tensor(frame) {
    const crop = this.crop(frame), S = this.size, out = new Float32Array(S * S * 3), chw = this.spec.layout === "TCHW";
    for (let i = 0; i < S * S; i++) for (let c = 0; c < 3; c++) {
      out[chw ? c * S * S + i : i * 3 + c] = this.lut[c][crop[i * 3 + c]];
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------- the bundle
const PRECISIONS = ["int8", "fp16", "fp32"]; // the Python runtime's "auto" order

async function sha256Hex(buffer) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchOk(url, what) {
  const response = await fetch(url);
  if (!response.ok) throw fail("BundleError", `cannot fetch ${what} (${url}): HTTP ${response.status}`);
  return response;
}

function roles(manifest) {
  if (!manifest.faster) return ["model"];
  // an adaptive bundle (faster.gate, schema 1.3) run as its pattern would answer cheap-only: refused until supported
  if (manifest.faster.gate) {
    throw fail("BundleError", `bundle ${manifest.name} is an adaptive FASTER bundle (faster.gate): the browser runtime does not run its gate yet; use the Python sdk`);
  }
  return [...new Set(manifest.faster.pattern), "aggregator"];
}

/** A loaded bundle: the manifest and one ONNX Runtime Web session per role. */
export class Model {
  constructor(manifest, programs, sessions, precision, threads) {
    Object.assign(this, { manifest, programs, sessions, precision, threads });
    this.labels = manifest.labels;
    this.kind = manifest.faster ? "faster" : programs.model.mode;
  }

  inputSpec(role) {
    return this.manifest.faster && role !== "aggregator" ? this.manifest.faster.clip_models[role].input
      : this.manifest.input;
  }

  sampler(role) {
    return new Sampler(this.manifest.faster ? this.manifest.faster.clip_models[role].sampler : this.manifest.sampler);
  }

  zeroState(role) {
    return this.programs[role].state.map((t) => new Float32Array(t.shape.reduce((a, b) => a * b, 1)));
  }

  /** Run a role's program on float32 arrays (inputs then state), returning its outputs (outputs then new state). */
  async run(role, arrays) {
    const prog = this.programs[role], session = this.sessions[role];
    const specs = [...prog.inputs, ...prog.state];
    const feeds = {};
    session.inputNames.forEach((name, i) => { feeds[name] = new ort.Tensor("float32", arrays[i], specs[i].shape); });
    const result = await session.run(feeds);
    return session.outputNames.map((name) => result[name].data);
  }
}

/** Load the bundle served at `base` (manifest.json and its programs; every program's sha256 is checked). */
export async function load(base = "./bundle/", { precision = null, threads = null } = {}) {
  const root = new URL(base, document.baseURI);
  const manifest = await (await fetchOk(new URL("manifest.json", root), "the manifest")).json();
  const need = roles(manifest);
  const onnx = manifest.programs.filter((p) => p.backend === "onnx");
  const choices = PRECISIONS.filter((p) => precision === null || p === precision);
  const chosen = choices.find((prec) => need.every((r) => onnx.some((p) => p.role === r && p.precision === prec)));
  if (chosen === undefined) {
    throw fail("BundleError", `bundle ${manifest.name} has no .onnx programs${precision ? ` of precision ${precision}` : ""} for ${need.join(", ")}: export it with the onnx format`);
  }
  const n = threads ?? (globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.wasm.numThreads = n;
  ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
  const programs = {}, sessions = {};
  for (const role of need) {
    const prog = onnx.find((p) => p.role === role && p.precision === chosen);
    if (prog.inputs.some((t) => t.dtype !== "float32")) {
      throw fail("BundleError", `program ${prog.id} takes ${prog.inputs.map((t) => t.dtype)} inputs: the browser runtime feeds float32 only`);
    }
    const bytes = await (await fetchOk(new URL(prog.file, root), `program ${prog.id}`)).arrayBuffer();
    const digest = await sha256Hex(bytes);
    if (digest !== prog.sha256) {
      throw fail("BundleError", `program ${prog.file}: sha256 ${digest} does not match the manifest's ${prog.sha256}`);
    }
    programs[role] = prog;
    sessions[role] = await ort.InferenceSession.create(new Uint8Array(bytes), {
      executionProviders: ["wasm"], executionMode: "sequential", graphOptimizationLevel: "all",
    });
  }
  return new Model(manifest, programs, sessions, chosen, n);
}

// -------------------------------------------------------------------------------------------- streaming windows
export const DEFAULT_WINDOW = 32;

/** sdk.classifier.default_window: {frames, reason, warning}. */
export function defaultWindow(manifest, fps = null) {
  if (manifest.faster) return { frames: manifest.faster.segment_frames, reason: "FASTER segment" };
  const clip = manifest.clip ?? null, rate = fps > 0 && Number.isFinite(fps) ? fps : null;
  if (clip === null) {
    const s = manifest.sampler, frames = Math.max(DEFAULT_WINDOW, (s.frames - 1) * (s.stride ?? 1) + 1);
    return { frames, reason: "default: the bundle does not record its training clip",
      warning: `bundle ${manifest.name} does not record its training clip length: windows of ${frames} frames` };
  }
  if (clip.seconds != null && rate !== null) {
    return { frames: Math.max(1, Math.floor(clip.seconds * rate + 0.5)),
      reason: `the training clip's ${clip.seconds.toFixed(2)} s at the source's ${rate} fps` };
  }
  return { frames: clip.frames, reason: `the training clip's ${clip.frames} frames` };
}

function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Array.from(logits, (v) => Math.exp(v - max)), sum = e.reduce((a, b) => a + b, 0);
  return Float32Array.from(e, (v) => v / sum);
}

const STAGES = ["decode", "sample", "preprocess", "model", "aggregate"];

/** sdk.StreamClassifier: push frames one at a time (awaiting each push); a prediction at each window's end. */
export class StreamClassifier {
  constructor(model, { window = null, fps = null, topK = 5 } = {}) {
    this.model = model;
    this.topK = Math.min(topK, model.labels.length);
    const choice = window === null || model.kind === "faster" ? defaultWindow(model.manifest, fps)
      : { frames: window, reason: "given" };
    if (!(Number.isInteger(choice.frames) && choice.frames >= 1)) {
      throw fail("ConfigError", `window must be a positive number of frames, got ${choice.frames}`);
    }
    Object.assign(this, { window: choice.frames, windowReason: choice.reason, warning: choice.warning ?? null });
    const roleNames = model.kind === "faster" ? Object.keys(model.manifest.faster.clip_models) : ["model"];
    this.preps = {}; this.copies = {};
    for (const role of roleNames) {
      const spec = model.inputSpec(role);
      this.preps[role] = new Preprocess(spec.preprocess, spec.in_program);
      this.copies[role] = model.sampler(role).copies(this.window);
    }
    this.stats = { framesSeen: 0, framesKept: 0, framesDropped: 0, frameErrors: 0, predictions: 0 };
    this.reset();
  }

  reset() {
    this.frames = 0;
    this.windowIndex = 0;
    this.lastTimestamp = null;
    this.state = this.model.kind === "faster" ? this.model.zeroState("aggregator") : [];
    this.startWindow();
  }

  startWindow() {
    const faster = this.model.manifest.faster;
    this.role = faster ? faster.pattern[this.windowIndex % faster.pattern.length] : "model";
    this.position = 0;
    this.buffer = [];
    this.stepLogits = [];
    this.lap = Object.fromEntries(STAGES.map((s) => [s, 0]));
    if (this.model.kind === "stream") this.state = this.model.zeroState("model");
  }

  /** Whether the next frame will be kept: ask before grabbing or converting a frame. */
  wantsNext() {
    return this.copies[this.role][this.position] > 0;
  }

  timed(stage, t0) {
    const t = now();
    this.lap[stage] += t - t0;
    return t;
  }

  /** Offer the next frame (or a function returning it, called only when the frame is kept). */
  async push(frame, timestamp = null) {
    const index = this.frames;
    if (timestamp !== null && (!Number.isFinite(timestamp) || (this.lastTimestamp !== null && timestamp <= this.lastTimestamp))) {
      return this.error(fail("FrameError", `timestamps must increase: ${timestamp} after ${this.lastTimestamp}`), index, timestamp);
    }
    let t0 = now();
    const copies = this.copies[this.role][this.position];
    t0 = this.timed("sample", t0);
    if (copies) {
      let x;
      try {
        if (typeof frame === "function") {
          frame = frame();
          t0 = this.timed("decode", t0);
        }
        x = this.preps[this.role].tensor(frame);
        t0 = this.timed("preprocess", t0);
      } catch (err) {
        if (err instanceof EdgeVideoError) return this.error(err, index, timestamp);
        throw err;
      }
      this.stats.framesKept += 1;
      if (this.model.kind === "stream") {
        const nOut = this.model.programs.model.outputs.length;
        for (let i = 0; i < copies; i++) {
          const out = await this.model.run("model", [x, ...this.state]);
          this.stepLogits.push(out[0]);
          this.state = out.slice(nOut);
        }
        this.timed("model", t0);
      } else {
        for (let i = 0; i < copies; i++) this.buffer.push(x);
      }
    } else {
      this.stats.framesDropped += 1;
    }
    this.position += 1;
    this.frames += 1;
    this.stats.framesSeen += 1;
    if (timestamp !== null) this.lastTimestamp = timestamp;
    if (this.position < this.window) return null;
    return this.emit(index, timestamp);
  }

  error(err, index, timestamp) {
    this.stats.frameErrors += 1;
    return { error: err, frameIndex: index, window: this.windowIndex, role: this.role, timestamp };
  }

  stack(frames) {
    const out = new Float32Array(frames.reduce((n, f) => n + f.length, 0));
    let offset = 0;
    for (const f of frames) { out.set(f, offset); offset += f.length; }
    return out;
  }

  async emit(index, timestamp) {
    const role = this.role, window = this.windowIndex, kind = this.model.kind;
    let t0 = now(), logits;
    if (kind === "clip") {
      logits = (await this.model.run("model", [this.stack(this.buffer)]))[0];
      t0 = this.timed("model", t0);
    } else if (kind === "stream") {
      const K = this.stepLogits[0].length;
      logits = new Float32Array(K);
      for (let k = 0; k < K; k++) {
        let sum = 0;
        for (const row of this.stepLogits) sum += row[k];
        logits[k] = sum / this.stepLogits.length;
      }
    } else {
      const features = (await this.model.run(role, [this.stack(this.buffer)]))[1];
      t0 = this.timed("model", t0);
      const out = await this.model.run("aggregator", [features, ...this.state]);
      logits = out[0];
      this.state = out.slice(this.model.programs.aggregator.outputs.length);
    }
    const probabilities = softmax(logits);
    const order = Array.from(probabilities.keys()).sort((a, b) => probabilities[b] - probabilities[a] || a - b)
      .slice(0, this.topK);
    this.timed("aggregate", t0);
    const latencyMs = this.lap;
    this.stats.predictions += 1;
    this.windowIndex += 1;
    this.startWindow();
    return {
      labels: order.map((i) => this.model.labels[i]), scores: order.map((i) => probabilities[i]), classIds: order,
      logits: Array.from(logits), probabilities: Array.from(probabilities), latencyMs, timestamp,
      frameIndex: index, window, role, error: null,
    };
  }
}
