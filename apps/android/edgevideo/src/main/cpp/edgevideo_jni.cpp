// JNI over the C API of sdk/native (include/edgevideo.h). No logic here: every decision is the core's.
#include <jni.h>

#include <cmath>
#include <string>
#include <vector>

#include "edgevideo.h"

namespace {

void throw_core(JNIEnv* env, ev_status s) {
  std::string msg = std::string(ev_status_name(s)) + ": " + ev_last_error();
  env->ThrowNew(env->FindClass("org/edgevideo/EdgeVideoException"), msg.c_str());
}

ev_classifier* handle(jlong h) { return reinterpret_cast<ev_classifier*>(h); }

jfloatArray bad_frame(JNIEnv* env, const std::string& what) {
  const std::string msg = "EV_ERR_BAD_FRAME: " + what;
  env->ThrowNew(env->FindClass("org/edgevideo/EdgeVideoException"), msg.c_str());
  return nullptr;
}

// null (no prediction yet), or {top1, score, window, role, frameIndex} as floats
jfloatArray prediction_array(JNIEnv* env, const ev_prediction& p) {
  if (!p.ready) return nullptr;
  jfloat v[5] = {static_cast<jfloat>(p.top1), p.score, static_cast<jfloat>(p.window), static_cast<jfloat>(p.role),
                 static_cast<jfloat>(p.frame_index)};
  jfloatArray out = env->NewFloatArray(5);
  env->SetFloatArrayRegion(out, 0, 5, v);
  return out;
}

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_org_edgevideo_EdgeVideo_nativeCreate(JNIEnv* env, jclass, jstring dir, jint window,
                                                                       jdouble ema, jdouble hysteresis,
                                                                       jboolean verify) {
  const char* path = env->GetStringUTFChars(dir, nullptr);
  ev_options o;
  ev_options_default(&o);
  o.window = window;
  o.smoothing = (ema > 0 || hysteresis > 0) ? 1 : 0;
  o.ema = ema;
  o.hysteresis = hysteresis;
  o.verify_golden = verify ? 1 : 0;
  ev_classifier* c = nullptr;
  ev_status s = ev_create(path, &o, &c);
  env->ReleaseStringUTFChars(dir, path);
  if (s != EV_OK) {
    throw_core(env, s);
    return 0;
  }
  return reinterpret_cast<jlong>(c);
}

// {copies, size, short_side, window, role}
JNIEXPORT jintArray JNICALL Java_org_edgevideo_EdgeVideo_nativeNextFrame(JNIEnv* env, jclass, jlong h) {
  ev_frame_request r;
  ev_status s = ev_next_frame(handle(h), &r);
  if (s != EV_OK) {
    throw_core(env, s);
    return nullptr;
  }
  jint v[5] = {r.copies, r.size, r.short_side, r.window, r.role};
  jintArray out = env->NewIntArray(5);
  env->SetIntArrayRegion(out, 0, 5, v);
  return out;
}

// rgb == null for a frame the sampler drops. Returns null (no prediction yet), or
// {top1, score, window, role, frameIndex} as floats. A bad frame throws EdgeVideoException (the stream goes on).
JNIEXPORT jfloatArray JNICALL Java_org_edgevideo_EdgeVideo_nativePush(JNIEnv* env, jclass, jlong h,
                                                                           jbyteArray rgb, jint width, jint height,
                                                                           jdouble timestamp) {
  jbyte* data = rgb ? env->GetByteArrayElements(rgb, nullptr) : nullptr;
  size_t length = rgb ? static_cast<size_t>(env->GetArrayLength(rgb)) : 0;
  ev_prediction p;
  ev_status s = ev_push_frame(handle(h), reinterpret_cast<const uint8_t*>(data), length, width, height,
                              std::isnan(timestamp) ? NAN : timestamp, &p);
  if (data) env->ReleaseByteArrayElements(rgb, data, JNI_ABORT);
  if (s != EV_OK) {
    throw_core(env, s);
    return nullptr;
  }
  return prediction_array(env, p);
}

// A camera image (ev_push_image), planes read in place from direct ByteBuffers. format < 0: Android YUV_420_888,
// whose layout follows from uv_pixel_stride and where the chroma buffers start. Returns as nativePush.
JNIEXPORT jfloatArray JNICALL Java_org_edgevideo_EdgeVideo_nativePushImage(
    JNIEnv* env, jclass, jlong h, jobject p0, jobject p1, jobject p2, jint s0, jint s1, jint s2, jint width,
    jint height, jint format, jint rotation, jboolean full_range, jint uv_pixel_stride, jdouble timestamp) {
  ev_frame_request request;
  ev_status q = ev_next_frame(handle(h), &request);
  if (q != EV_OK) {
    throw_core(env, q);
    return nullptr;
  }
  if (request.copies == 0) {  // a frame the sampler drops: its planes are never looked at
    ev_prediction p;
    ev_status s = ev_push_image(handle(h), nullptr, std::isnan(timestamp) ? NAN : timestamp, &p);
    if (s != EV_OK) throw_core(env, s);
    return s == EV_OK ? prediction_array(env, p) : nullptr;
  }
  const jobject buffers[3] = {p0, p1, p2};
  const uint8_t* base[3] = {nullptr, nullptr, nullptr};
  jlong capacity[3] = {0, 0, 0};
  for (int k = 0; k < 3; ++k) {
    if (!buffers[k]) continue;
    base[k] = static_cast<const uint8_t*>(env->GetDirectBufferAddress(buffers[k]));
    capacity[k] = env->GetDirectBufferCapacity(buffers[k]);
    if (!base[k]) return bad_frame(env, "plane " + std::to_string(k) + " is not a direct ByteBuffer");
  }
  ev_image im{};
  im.width = width, im.height = height, im.rotation = rotation, im.full_range = full_range ? 1 : 0;
  int strides[3] = {s0, s1, s2};
  int planes[3] = {0, 1, 2};
  jlong spill = 0;  // bytes of an interleaved chroma plane that lie in the other chroma buffer (its last one)
  if (format >= 0) {
    im.format = format;
  } else if (uv_pixel_stride == 1) {
    im.format = EV_PIXEL_I420;
  } else if (uv_pixel_stride == 2 && base[1] && base[2] && base[2] == base[1] + 1) {
    im.format = EV_PIXEL_NV12;  // U then V, interleaved, from the U buffer
    spill = 1;
  } else if (uv_pixel_stride == 2 && base[1] && base[2] && base[1] == base[2] + 1) {
    im.format = EV_PIXEL_NV21;  // V then U, interleaved, from the V buffer
    planes[1] = 2;
    spill = 1;
  } else {
    return bad_frame(env, "YUV_420_888 with chroma pixel stride " + std::to_string(uv_pixel_stride) +
                              " whose U and V buffers do not interleave: not a layout the core reads");
  }
  const bool yuv = im.format >= EV_PIXEL_NV12;
  const int used = im.format == EV_PIXEL_I420 ? 3 : (yuv ? 2 : 1);
  const jlong bytes_per_pixel = im.format == EV_PIXEL_RGB ? 3 : (im.format <= EV_PIXEL_BGRA ? 4 : 1);
  for (int k = 0; k < used; ++k) {  // the core cannot see a buffer's end: check every row it may read fits
    const int b = planes[k];
    const jlong rows = k == 0 ? height : height / 2;
    const jlong row = k == 0 ? width * bytes_per_pixel : (im.format == EV_PIXEL_I420 ? width / 2 : width);
    const jlong stride = strides[k] ? strides[k] : row;
    const jlong need = rows > 0 ? stride * (rows - 1) + row : 0;
    if (!base[b] || capacity[b] + (k == 1 ? spill : 0) < need)
      return bad_frame(env, "plane " + std::to_string(k) + " holds " + std::to_string(capacity[b]) +
                                " bytes; a " + std::to_string(width) + "x" + std::to_string(height) +
                                " image needs " + std::to_string(need));
    im.planes[k] = base[b];
    im.strides[k] = strides[k];
  }
  ev_prediction p;
  ev_status s = ev_push_image(handle(h), &im, std::isnan(timestamp) ? NAN : timestamp, &p);
  if (s != EV_OK) {
    throw_core(env, s);
    return nullptr;
  }
  return prediction_array(env, p);
}

JNIEXPORT jstring JNICALL Java_org_edgevideo_EdgeVideo_nativeLabel(JNIEnv* env, jclass, jlong h, jint i) {
  const char* label = ev_label(handle(h), i);
  return label ? env->NewStringUTF(label) : nullptr;
}

JNIEXPORT void JNICALL Java_org_edgevideo_EdgeVideo_nativeReset(JNIEnv* env, jclass, jlong h) {
  ev_status s = ev_reset(handle(h));
  if (s != EV_OK) throw_core(env, s);
}

JNIEXPORT void JNICALL Java_org_edgevideo_EdgeVideo_nativeSetGateThreshold(JNIEnv* env, jclass, jlong h,
                                                                          jdouble threshold) {
  ev_status s = ev_set_gate_threshold(handle(h), threshold);
  if (s != EV_OK) throw_core(env, s);
}

// {segments, expensive segments}
JNIEXPORT jlongArray JNICALL Java_org_edgevideo_EdgeVideo_nativeSegmentCounts(JNIEnv* env, jclass, jlong h) {
  int64_t segments = 0, expensive = 0;
  ev_status s = ev_segment_counts(handle(h), &segments, &expensive);
  if (s != EV_OK) {
    throw_core(env, s);
    return nullptr;
  }
  jlong v[2] = {static_cast<jlong>(segments), static_cast<jlong>(expensive)};
  jlongArray out = env->NewLongArray(2);
  env->SetLongArrayRegion(out, 0, 2, v);
  return out;
}

JNIEXPORT void JNICALL Java_org_edgevideo_EdgeVideo_nativeDestroy(JNIEnv*, jclass, jlong h) {
  ev_destroy(handle(h));
}

}  // extern "C"
