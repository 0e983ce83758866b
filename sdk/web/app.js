// The demo page: a video file (stepped frame by frame, every frame seen) or the webcam (live, frames arriving while
// the previous one is still being classified are skipped) -> edgevideo.js -> label, score, per-stage latency.
// Query parameters: precision=fp32|fp16|int8, threads=N, window=N (frames per window; default: the training clip).
import { StreamClassifier, load } from "./edgevideo.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const intParam = (name) => (params.has(name) ? parseInt(params.get(name), 10) : null);
const video = $("video"), canvas = document.createElement("canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });
// What the page did, for people and for tests (tests/test_web.py reads it).
const page = (window.edgevideo = { model: null, predictions: [], errors: [], source: null, coldStart: {} });
let run = 0; // incremented to stop the running source

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  if (error) page.errors.push(text);
}

/** The video element's current frame as RGBA ImageData at its own resolution. */
function grab() {
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  context.drawImage(video, 0, 0);
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

function show(prediction, classifier) {
  if (prediction === null) return;
  if (prediction.error) {
    status(`frame ${prediction.frameIndex}: ${prediction.error.message}`, true);
    return;
  }
  page.predictions.push(prediction);
  if (page.coldStart.firstPredictionMs === undefined) {
    page.coldStart.firstPredictionMs = performance.now() - page.coldStart.sourceStart;
  }
  $("label").textContent = prediction.labels[0];
  $("score").textContent = `score ${prediction.scores[0].toFixed(3)} - window ${prediction.window} ` +
    `(frame ${prediction.frameIndex}, ${classifier.window} frames: ${classifier.windowReason})`;
  $("top").innerHTML = prediction.labels.slice(0, 3)
    .map((label, i) => `<tr><td>${label}</td><td>${prediction.scores[i].toFixed(3)}</td></tr>`).join("");
  $("latency").innerHTML = "<tr><th>stage</th><th>ms (last window)</th></tr>" + Object.entries(prediction.latencyMs)
    .map(([stage, ms]) => `<tr><td>${stage}</td><td>${ms.toFixed(2)}</td></tr>`).join("");
  const s = classifier.stats;
  status(`${s.framesSeen} frames seen, ${s.framesKept} kept, ${s.predictions} predictions`);
}

const once = (target, event) => new Promise((resolve) => target.addEventListener(event, resolve, { once: true }));

/** Seconds per frame of the loaded file: median step of the frames presented while it plays for a moment. */
async function frameInterval() {
  const steps = [];
  let last = null;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 3000);
    const onFrame = (_, meta) => {
      if (last !== null && meta.presentedFrames > last.presentedFrames && meta.mediaTime > last.mediaTime) {
        steps.push((meta.mediaTime - last.mediaTime) / (meta.presentedFrames - last.presentedFrames));
      }
      last = meta;
      if (steps.length >= 5) { clearTimeout(timer); resolve(); } else video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    video.play();
  });
  video.pause();
  steps.sort((a, b) => a - b);
  return steps.length ? steps[Math.floor(steps.length / 2)] : 1 / 30;
}

function seek(time) {
  const done = once(video, "seeked");
  video.currentTime = time;
  return done;
}

/** Every frame of a file, in order: the frames the sampler keeps are sought and grabbed, the others never are. */
async function runFile(file) {
  const me = ++run;
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  page.coldStart.sourceStart = performance.now();
  delete page.coldStart.firstPredictionMs;
  await once(video, "loadeddata");
  const dt = await frameInterval();
  const frames = Math.round(video.duration / dt);
  const classifier = new StreamClassifier(page.model, { window: intParam("window"), fps: 1 / dt });
  page.source = { kind: "file", name: file.name, frames, fps: 1 / dt, window: classifier.window, done: false };
  for (let i = 0; i < frames && me === run; i++) {
    if (classifier.wantsNext()) await seek((i + 0.5) * dt);
    show(await classifier.push(grab, i * dt), classifier);
  }
  page.source.done = me === run;
  if (page.source.done) status(`${file.name}: done, ${classifier.stats.predictions} predictions`);
}

/** The webcam, live: each new camera frame is offered unless the previous one is still being classified. */
async function runCamera() {
  const me = ++run;
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  video.src = "";
  video.srcObject = stream;
  page.coldStart.sourceStart = performance.now();
  delete page.coldStart.firstPredictionMs;
  await video.play();
  const fps = stream.getVideoTracks()[0].getSettings().frameRate ?? null;
  const classifier = new StreamClassifier(page.model, { window: intParam("window"), fps });
  page.source = { kind: "camera", fps, window: classifier.window, skipped: 0 };
  let busy = false;
  const onFrame = async (_, meta) => {
    if (me !== run) { stream.getTracks().forEach((t) => t.stop()); return; }
    video.requestVideoFrameCallback(onFrame);
    if (busy) { page.source.skipped += 1; return; }
    busy = true;
    const frame = classifier.wantsNext() ? grab() : null; // grabbed now: the element shows the next frame later
    show(await classifier.push(frame ?? (() => null), meta.mediaTime), classifier);
    busy = false;
  };
  video.requestVideoFrameCallback(onFrame);
}

async function main() {
  const t0 = performance.now();
  try {
    page.model = await load("./bundle/", { precision: params.get("precision"), threads: intParam("threads") });
  } catch (err) {
    status(`error: ${err.message}`, true);
    throw err;
  }
  page.coldStart.loadMs = performance.now() - t0;
  const m = page.model;
  $("bundle").textContent = `${m.manifest.name} (${m.kind}, ${m.labels.length} labels)`;
  $("runtime").textContent = `ONNX Runtime Web, WASM, ${m.precision} programs, ${m.threads} thread(s)` +
    `${crossOriginIsolated ? "" : " (page not cross-origin isolated: one thread)"}; loaded in ${page.coldStart.loadMs.toFixed(0)} ms`;
  status("ready: choose a video file or the webcam");
  const guard = (promise) => promise.catch((err) => status(`error: ${err.message}`, true));
  $("file").addEventListener("change", (e) => e.target.files.length && guard(runFile(e.target.files[0])));
  $("camera").addEventListener("click", () => guard(runCamera()));
  $("stop").addEventListener("click", () => { run++; video.pause(); status("stopped"); });
  page.readyAt = performance.now(); // ms since navigation start
  page.ready = true;
}

main();
