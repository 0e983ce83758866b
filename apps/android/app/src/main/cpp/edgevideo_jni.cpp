// JNI over the C API of sdk/native (include/edgevideo.h). No logic here: every decision is the core's.
#include <jni.h>

#include <cmath>
#include <string>
#include <vector>

#include "edgevideo.h"

namespace {

void throw_core(JNIEnv* env, ev_status s) {
  std::string msg = std::string(ev_status_name(s)) + ": " + ev_last_error();
  env->ThrowNew(env->FindClass("org/edgevideo/demo/EdgeVideoException"), msg.c_str());
}

ev_classifier* handle(jlong h) { return reinterpret_cast<ev_classifier*>(h); }

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_org_edgevideo_demo_EdgeVideo_nativeCreate(JNIEnv* env, jclass, jstring dir, jint window,
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
JNIEXPORT jintArray JNICALL Java_org_edgevideo_demo_EdgeVideo_nativeNextFrame(JNIEnv* env, jclass, jlong h) {
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
JNIEXPORT jfloatArray JNICALL Java_org_edgevideo_demo_EdgeVideo_nativePush(JNIEnv* env, jclass, jlong h,
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
  if (!p.ready) return nullptr;
  jfloat v[5] = {static_cast<jfloat>(p.top1), p.score, static_cast<jfloat>(p.window), static_cast<jfloat>(p.role),
                 static_cast<jfloat>(p.frame_index)};
  jfloatArray out = env->NewFloatArray(5);
  env->SetFloatArrayRegion(out, 0, 5, v);
  return out;
}

JNIEXPORT jstring JNICALL Java_org_edgevideo_demo_EdgeVideo_nativeLabel(JNIEnv* env, jclass, jlong h, jint i) {
  const char* label = ev_label(handle(h), i);
  return label ? env->NewStringUTF(label) : nullptr;
}

JNIEXPORT void JNICALL Java_org_edgevideo_demo_EdgeVideo_nativeReset(JNIEnv* env, jclass, jlong h) {
  ev_status s = ev_reset(handle(h));
  if (s != EV_OK) throw_core(env, s);
}

JNIEXPORT void JNICALL Java_org_edgevideo_demo_EdgeVideo_nativeDestroy(JNIEnv*, jclass, jlong h) {
  ev_destroy(handle(h));
}

}  // extern "C"
