/* edgevideo native core: the sdk bundle contract (manifest, sha256, streaming sampler, explicit state, FASTER
 * schedule, smoothing, golden self-check) on ExecuTorch's C++ runtime, behind a plain C API for JNI and Swift.
 *
 * Semantics are sdk.StreamClassifier's (sdk/classifier.py module docstring): windows, kept frames, state reset
 * per window (stream bundles), FASTER segments and aggregator state, softmax, EMA + hysteresis smoothing.
 *
 * Frames: ev_push_frame takes uint8 RGB, HWC, rows packed, whose shorter side is already
 * ev_frame_request.short_side (the shorter-side resize of sdk.preprocess -- bilinear/area in OpenCV semantics -- is
 * the caller's: the camera / GPU scaler); the core centre-crops size x size exactly as sdk.preprocess does, and the
 * program scales and normalises. ev_push_image takes a camera image of any size and format (NV12 / NV21 / I420 /
 * RGBA / BGRA / RGB, strides, rotation) and does conversion, resize and crop itself. A kept frame
 * of another size or buffer length is EV_ERR_BAD_FRAME: it gets no frame number and the stream goes on. Frames the
 * sampler drops are never inspected (pass NULL: ev_next_frame says which before you decode).
 *
 * Errors: every function returns an ev_status; on failure ev_last_error() (thread-local) says what is wrong.
 * No function throws or aborts on bad input. One ev_classifier is not thread-safe; use one per thread.
 */
#ifndef EDGEVIDEO_H
#define EDGEVIDEO_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define EV_API __attribute__((visibility("default")))
#else
#define EV_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ev_status {
  EV_OK = 0,
  EV_ERR_INVALID_ARGUMENT = 1, /* null pointer, bad option value */
  EV_ERR_IO = 2,               /* bundle directory or a file in it is missing / unreadable */
  EV_ERR_BAD_BUNDLE = 3,       /* manifest.json is not valid JSON or breaks the schema */
  EV_ERR_HASH_MISMATCH = 4,    /* a program or golden file does not match its sha256 */
  EV_ERR_UNSUPPORTED = 5,      /* valid bundle, but something this core does not run (backend, sampler kind) */
  EV_ERR_BAD_FRAME = 6,        /* wrong frame size / buffer length / null data: the frame is ignored */
  EV_ERR_RUNTIME = 7,          /* ExecuTorch failed to load or execute a program */
  EV_ERR_GOLDEN_MISMATCH = 8,  /* the self-check ran and disagreed with golden.npz */
  EV_ERR_INTERNAL = 9          /* anything else (out of memory, a bug): the message says what */
} ev_status;

typedef struct ev_classifier ev_classifier;

typedef struct ev_options {
  const char* precision; /* "fp32" / "int8" / "fp16" / NULL = the first of int8, fp16, fp32 (as sdk.load) */
  int32_t window;        /* clip/stream bundles: frames per window; 0 = the default (source_fps); FASTER: ignored */
  double ema;            /* smoothing (sdk.Smoothing): p = ema * p_prev + (1 - ema) * p_new, in [0, 1); 0 = off */
  double hysteresis;     /* the shown label changes only when another beats it by more than this, in [0, 1) */
  int32_t smoothing;     /* 1 = smoothing on (even with ema 0 and hysteresis 0, as sdk.Smoothing()) */
  int32_t verify_golden; /* 1 = run the golden self-check at create (fails with EV_ERR_GOLDEN_MISMATCH) */
  double source_fps;     /* the source's frame rate, 0 = unknown. Default window (sdk.classifier.default_window):
                          * one training clip (manifest "clip"), floor(clip.seconds * source_fps + 0.5) frames when
                          * both are known, else clip.frames; a bundle without "clip": max(32, sampler span) */
} ev_options;

typedef struct ev_frame_request {
  int32_t copies;     /* how many times the sampler uses the next frame: 0 = dropped, never inspected (pass NULL) */
  int32_t size;       /* the program's square input side */
  int32_t short_side; /* a frame's shorter side must be this (preprocess.resize, or size): the core centre-crops */
  int32_t window;     /* index of the window / FASTER segment the next frame belongs to */
  int32_t role;       /* 0 model, 1 expensive, 2 cheap */
} ev_frame_request;

typedef struct ev_prediction {
  int32_t ready;       /* 1 when this push completed a prediction; the other fields are valid only then */
  int32_t top1;        /* the shown class: argmax of the (smoothed) probabilities, or the hysteresis-held one */
  float score;         /* its (smoothed) probability */
  int32_t window;      /* index of the window / FASTER segment that produced it, since create or reset */
  int32_t role;        /* 0 model, 1 expensive, 2 cheap: which clip model saw that segment */
  int64_t frame_index; /* index of the window's last frame, since create or reset (bad frames get no index) */
  double timestamp;    /* the timestamp passed with that frame (NAN when none) */
} ev_prediction;

/* Camera images for ev_push_image: what Android (YUV_420_888, Bitmap) and iOS (CVPixelBuffer 420f / 420v / BGRA)
 * deliver, passed without a conversion by the app. */
typedef enum ev_pixel_format {
  EV_PIXEL_RGB = 0,  /* planes[0]: R, G, B per pixel */
  EV_PIXEL_RGBA = 1, /* planes[0]: R, G, B, A (Android Bitmap ARGB_8888 in memory); alpha ignored */
  EV_PIXEL_BGRA = 2, /* planes[0]: B, G, R, A (iOS kCVPixelFormatType_32BGRA); alpha ignored */
  EV_PIXEL_NV12 = 3, /* planes[0] Y, planes[1] interleaved U, V at half resolution (iOS 420f / 420v) */
  EV_PIXEL_NV21 = 4, /* planes[0] Y, planes[1] interleaved V, U (Android NV21; YUV_420_888 whose V buffer
                      * starts one byte before its U buffer, pixel stride 2) */
  EV_PIXEL_I420 = 5  /* planes[0] Y, planes[1] U, planes[2] V, each chroma plane at half resolution
                      * (YUV_420_888 with pixel stride 1) */
} ev_pixel_format;

typedef struct ev_image {
  const uint8_t* planes[3]; /* see ev_pixel_format; unused planes NULL. Rows of plane k are strides[k] bytes apart */
  int32_t strides[3];       /* bytes per row, >= the row's bytes (0 = packed); the buffers are the caller's */
  int32_t width, height;    /* as stored, before rotation; even for the YUV formats */
  int32_t format;           /* ev_pixel_format */
  int32_t rotation;         /* clockwise degrees that make the image upright: 0, 90, 180 or 270 */
  int32_t full_range;       /* YUV: 1 = full range BT.601 (JFIF: Android cameras, iOS 420f), 0 = video range
                             * (16-235: iOS 420v); ignored for RGB formats */
} ev_image;

EV_API void ev_options_default(ev_options* options);
EV_API ev_status ev_create(const char* bundle_dir, const ev_options* options, ev_classifier** out);
/* Push the next frame (rgb: width*height*3 bytes, `length` checked when the frame is kept). On success
 * *prediction says whether a prediction completed. A bad kept frame is EV_ERR_BAD_FRAME and does not advance. */
EV_API ev_status ev_push_frame(ev_classifier* c, const uint8_t* rgb, size_t length, int32_t width, int32_t height,
                        double timestamp, ev_prediction* prediction);
/* timestamp: seconds, strictly increasing, or NAN for none; a non-increasing one is EV_ERR_BAD_FRAME. */
/* Push the next frame as a camera image of any size: converted to RGB, rotated upright, its shorter side resized
 * to short_side (bilinear, OpenCV's INTER_LINEAR mapping) and centre-cropped in one pass that computes only the
 * crop's pixels (no full-size RGB frame). Within one uint8 step of sdk.camera.CameraFrame.to_rgb() followed by
 * sdk.preprocess. A dropped frame is not read (image may be NULL). Bundles whose preprocess.interpolation is
 * "area" are EV_ERR_UNSUPPORTED here (resize yourself and use ev_push_frame). */
EV_API ev_status ev_push_image(ev_classifier* c, const ev_image* image, double timestamp, ev_prediction* prediction);
/* The size x size RGB crop (HWC, packed) ev_push_image feeds a role whose shorter side is short_side: for tests. */
EV_API ev_status ev_image_to_input(const ev_image* image, int32_t short_side, int32_t size, uint8_t* out);
/* Layouts of ev_image_to_values' output. */
typedef enum ev_layout {
  EV_LAYOUT_CHW = 0, /* planar: 3 planes of size x size (a TCHW program's frame) */
  EV_LAYOUT_HWC = 1  /* packed: size x size pixels of 3 values (a THWC program's frame) */
} ev_layout;
/* The same crop written as a program's float input, in one pass (no uint8 crop in between): per channel c,
 * (float)v * mul[c] + add[c] in float32, two roundings and no fused multiply-add (bit-identical to
 * sdk.preprocess.Preprocess.value_affine's table), in `layout` (ev_layout) into out (3 * size * size floats).
 * EV_ERR_INVALID_ARGUMENT for NULL pointers, size outside [1, short_side] or an unknown layout; EV_ERR_BAD_FRAME
 * as ev_image_to_input. */
EV_API ev_status ev_image_to_values(const ev_image* image, int32_t short_side, int32_t size, const float mul[3],
                                    const float add[3], int32_t layout, float* out);
EV_API ev_status ev_next_frame(const ev_classifier* c, ev_frame_request* request);
EV_API ev_status ev_reset(ev_classifier* c); /* zeros state, empties windows, smoothing and the gate: a new stream */
EV_API void ev_destroy(ev_classifier* c);

/* After a ready prediction: the raw logits of that window/segment, and the smoothed probabilities. */
EV_API ev_status ev_last_logits(const ev_classifier* c, float* out, size_t n);
EV_API ev_status ev_last_probabilities(const ev_classifier* c, float* out, size_t n);
EV_API int32_t ev_num_classes(const ev_classifier* c);
EV_API const char* ev_label(const ev_classifier* c, int32_t index); /* NULL when out of range */
EV_API const char* ev_bundle_kind(const ev_classifier* c);         /* "clip", "stream" or "faster" */
EV_API const char* ev_precision(const ev_classifier* c);           /* the program set loaded: "fp32", "int8", ... */
EV_API int32_t ev_window(const ev_classifier* c);                  /* frames per prediction (FASTER: segment_frames) */

/* Adaptive FASTER bundles (manifest.faster.gate, schema 1.3): the cheap clip model sees every segment, the gate
 * scores its outputs (sdk.gate.Gate: confidence, change or learned) and the expensive model runs on the segment only
 * where the score exceeds the threshold; the aggregator takes whichever features ran. Both clip models' frames of a
 * segment are asked for (ev_next_frame: copies > 0 when either keeps it; a frame both keep at the cheap model's
 * short_side: ev_push_frame needs both roles to share it, ev_push_image resizes for each). The threshold is a
 * runtime option, set after ev_create (a function, not an ev_options field, so that ev_options keeps its layout):
 * NAN = the bundle's (the default), INFINITY = never the expensive model, -INFINITY = always; it applies from the
 * next segment on. EV_ERR_INVALID_ARGUMENT for a bundle without a gate. */
EV_API ev_status ev_set_gate_threshold(ev_classifier* c, double threshold);
/* FASTER bundles: segments classified since ev_create (ev_reset keeps counting, as sdk's stats) and how many of them
 * the expensive clip model saw (the gate's fire count; a fixed schedule's expensive segments). Either may be NULL. */
EV_API ev_status ev_segment_counts(const ev_classifier* c, int64_t* segments, int64_t* expensive_segments);

/* Golden self-check: run every program of the chosen set on golden.npz's inputs; *max_abs_diff gets the largest
 * difference from what the program returned at export, *checked the number of program outputs compared. */
EV_API ev_status ev_self_check(ev_classifier* c, double* max_abs_diff, int32_t* checked);
/* After ev_self_check, also one that returned EV_ERR_GOLDEN_MISMATCH: the id and max |diff| of the index-th
 * program compared (EV_ERR_INVALID_ARGUMENT past the last one). *program_id lives as long as the classifier. */
EV_API ev_status ev_self_check_program(const ev_classifier* c, int32_t index, const char** program_id,
                                       double* max_abs_diff);

EV_API const char* ev_last_error(void);
EV_API const char* ev_status_name(ev_status status);
EV_API const char* ev_version(void);

/* Utilities exposed for tests and tools. */
EV_API ev_status ev_sha256_path(const char* path, char out_hex[65]);
/* The default window (ev_options.source_fps) of a bundle whose manifest.json text is `manifest_json`. */
EV_API ev_status ev_default_window(const char* manifest_json, double source_fps, int32_t* window);
/* copies[i] for i < window: how often position i of a window is sampled, for a sampler given as the manifest's
 * JSON object (e.g. {"kind": "uniform_segments", "frames": 8, "stride": 1, "of": null, "seed": 0}). */
EV_API ev_status ev_sampler_copies(const char* sampler_json, int32_t window, int32_t* copies);

#ifdef __cplusplus
}
#endif

#endif /* EDGEVIDEO_H */
