#include "manifest.hpp"

#include <algorithm>
#include <initializer_list>
#include <set>

#include "error.hpp"
#include "json.hpp"

namespace ev {
namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(EV_ERR_BAD_BUNDLE, "manifest: " + where + ": " + what);
}

const Json& member(const Json& obj, const std::string& key, const std::string& where, Json::Type type) {
  if (!obj.is_object()) fail(where, "expected an object");
  const Json* v = obj.find(key);
  if (!v) fail(where + "." + key, "missing");
  if (v->type != type)
    fail(where + "." + key, std::string("expected ") + Json::type_name(type) + ", got " + Json::type_name(v->type));
  return *v;
}

std::string str(const Json& obj, const std::string& key, const std::string& where) {
  return member(obj, key, where, Json::Type::String).string;
}

std::string choice(const Json& obj, const std::string& key, const std::string& where,
                   std::initializer_list<const char*> choices) {
  std::string v = str(obj, key, where);
  for (const char* c : choices)
    if (v == c) return v;
  fail(where + "." + key, "'" + v + "' is not a valid value");
}

int64_t integer(const Json& obj, const std::string& key, const std::string& where) {
  const Json& v = member(obj, key, where, Json::Type::Number);
  if (!v.integral) fail(where + "." + key, "expected an integer");
  return v.integer;
}

TensorSpec tensor(const Json& j, const std::string& where) {
  TensorSpec t;
  t.name = str(j, "name", where);
  const Json& shape = member(j, "shape", where, Json::Type::Array);
  if (shape.array.empty() || shape.array.size() > 4) fail(where + ".shape", "expected 1 to 4 dimensions");
  int64_t n = 1;
  for (const Json& d : shape.array) {
    if (!d.is_int() || d.integer < 1 || d.integer > (1 << 24)) fail(where + ".shape", "expected positive integers");
    n *= d.integer;
    if (n > (int64_t(1) << 31)) fail(where + ".shape", "tensor too large");
    t.shape.push_back(d.integer);
  }
  t.dtype = choice(j, "dtype", where, {"float32", "float16", "int8", "uint8", "int32", "int64"});
  if ((t.dtype == "int8" || t.dtype == "uint8") && !j.find("quantization"))
    fail(where, t.dtype + " tensor needs its quantization");
  return t;
}

std::vector<TensorSpec> tensors(const Json& obj, const std::string& key, const std::string& where, bool optional) {
  std::vector<TensorSpec> out;
  const Json* v = obj.find(key);
  if (!v || v->is_null()) {
    if (optional) return out;
    fail(where + "." + key, "missing");
  }
  if (!v->is_array()) fail(where + "." + key, "expected an array");
  for (size_t i = 0; i < v->array.size(); ++i)
    out.push_back(tensor(v->array[i], where + "." + key + "[" + std::to_string(i) + "]"));
  return out;
}

InputSpec input_spec(const Json& j, const std::string& where) {
  InputSpec in;
  const Json& pre = member(j, "preprocess", where, Json::Type::Object);
  in.size = integer(pre, "size", where + ".preprocess");
  if (in.size < 1 || in.size > 8192) fail(where + ".preprocess.size", "out of range");
  if (const Json* layout = pre.find("layout")) {
    if (!layout->is_string() || (layout->string != "TCHW" && layout->string != "THWC"))
      fail(where + ".preprocess.layout", "expected TCHW or THWC");
    in.layout = layout->string;
  }
  if (const Json* interp = pre.find("interpolation")) {
    if (!interp->is_string() || (interp->string != "bilinear" && interp->string != "area"))
      fail(where + ".preprocess.interpolation", "expected bilinear or area");
    in.interpolation = interp->string;
  }
  const Json* resize = pre.find("resize");
  in.resize_to = in.size;
  if (resize && !resize->is_null()) {
    if (!resize->is_int() || resize->integer < in.size || resize->integer > 16384)
      fail(where + ".preprocess.resize", "expected null or an integer >= size");
    in.resize_to = resize->integer;
  }
  const Json& steps = member(j, "in_program", where, Json::Type::Array);
  std::set<std::string> have;
  for (const Json& s : steps.array) {
    if (!s.is_string() || (s.string != "scale" && s.string != "normalize")) fail(where + ".in_program", "unknown step");
    have.insert(s.string);
  }
  // The runtime feeds raw [0, 255] values: it relies on the program doing both steps.
  if (have.size() != 2)
    throw Error(EV_ERR_UNSUPPORTED, "manifest: " + where + ".in_program: the native core feeds [0, 255] RGB and "
                                    "needs programs that scale and normalise themselves");
  return in;
}

// A number > 0, or null / absent (0 = unknown).
double positive_or_null(const Json& obj, const std::string& key, const std::string& where) {
  const Json* v = obj.find(key);
  if (!v || v->is_null()) return 0.0;
  if (!v->is_number() || !(v->number > 0)) fail(where + "." + key, "must be a number > 0 or null");
  return v->number;
}

TrainingClip training_clip(const Json& j) {
  if (!j.is_object()) fail("clip", "expected an object");
  for (const auto& kv : j.object)
    if (kv.first != "frames" && kv.first != "fps" && kv.first != "seconds" && kv.first != "videos")
      fail("clip", "unknown field '" + kv.first + "'");
  TrainingClip c;
  c.frames = integer(j, "frames", "clip");
  if (c.frames < 1) fail("clip.frames", "must be >= 1");
  const Json* videos = j.find("videos");
  if (videos && !videos->is_null() && (!videos->is_int() || videos->integer < 1))
    fail("clip.videos", "must be an integer >= 1 or null");
  c.fps = positive_or_null(j, "fps", "clip");
  c.seconds = positive_or_null(j, "seconds", "clip");
  return c;
}

Sampler parse_sampler(const Json& obj, const std::string& where) {
  return Sampler::from_json(member(obj, "sampler", where, Json::Type::Object), where + ".sampler");
}

// sdk.manifest.FasterGate.parse: the fields a runtime needs, checked as strictly (the curve is the user's menu).
FasterGate faster_gate(const Json& j) {
  const std::string where = "faster.gate";
  if (!j.is_object()) fail(where, "expected an object");
  for (const auto& kv : j.object)
    if (kv.first != "kind" && kv.first != "threshold" && kv.first != "fire_rate" && kv.first != "curve" &&
        kv.first != "weights" && kv.first != "bias")
      fail(where, "unknown field '" + kv.first + "'");
  FasterGate g;
  g.kind = choice(j, "kind", where, {"confidence", "change", "learned"});
  g.threshold = member(j, "threshold", where, Json::Type::Number).number;
  member(j, "fire_rate", where, Json::Type::Number);
  const Json* weights = j.find("weights");
  const Json* bias = j.find("bias");
  const bool learned = g.kind == "learned";
  if (learned != (weights && !weights->is_null()) || learned != (bias && !bias->is_null()))
    fail(where, "the learned gate, and only it, has weights and a bias");
  if (!learned) return g;
  if (!weights->is_array() || weights->array.size() < 3) fail(where + ".weights", "expected F + 2 numbers");
  for (const Json& w : weights->array) {
    if (!w.is_number()) fail(where + ".weights", "expected F + 2 numbers");
    g.weights.push_back(w.number);
  }
  g.bias = member(j, "bias", where, Json::Type::Number).number;
  return g;
}

}  // namespace

bool safe_relative_path(const std::string& p) {
  if (p.empty() || p[0] == '/' || p.find('\\') != std::string::npos || p.find('\0') != std::string::npos)
    return false;
  size_t start = 0;
  for (;;) {
    size_t slash = p.find('/', start);
    if (p.substr(start, slash - start) == "..") return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

Manifest Manifest::parse(const std::string& text) {
  Json root;
  try {
    root = Json::parse(text);
  } catch (const JsonError& e) {
    throw Error(EV_ERR_BAD_BUNDLE, "manifest.json: " + e.message);
  }
  if (!root.is_object()) fail("top level", "expected an object");
  Manifest m;
  m.schema_version = str(root, "schema_version", "manifest");
  if (m.schema_version.substr(0, m.schema_version.find('.')) != "1")
    fail("schema_version", "'" + m.schema_version + "' is not supported (this core reads 1.x)");
  m.name = str(root, "name", "manifest");
  for (const Json& l : member(root, "labels", "manifest", Json::Type::Array).array) {
    if (!l.is_string() || l.string.empty()) fail("labels", "expected non-empty strings");
    m.labels.push_back(l.string);
  }
  if (m.labels.empty()) fail("labels", "expected a non-empty list");
  m.input = input_spec(member(root, "input", "manifest", Json::Type::Object), "input");
  m.sampler = parse_sampler(root, "manifest");
  const Json& programs = member(root, "programs", "manifest", Json::Type::Array);
  std::set<std::string> ids;
  for (size_t i = 0; i < programs.array.size(); ++i) {
    const Json& pj = programs.array[i];
    std::string where = "programs[" + std::to_string(i) + "]";
    Program p;
    p.id = str(pj, "id", where);
    where = "programs['" + p.id + "']";
    if (!ids.insert(p.id).second) fail("programs", "duplicate program id '" + p.id + "'");
    p.backend = choice(pj, "backend", where, {"executorch", "coreml", "tflite", "onnx"});
    p.precision = choice(pj, "precision", where, {"fp32", "fp16", "int8"});
    p.mode = choice(pj, "mode", where, {"clip", "stream", "aggregate"});
    p.role = pj.find("role") ? choice(pj, "role", where, {"model", "expensive", "cheap", "aggregator"}) : "model";
    p.file = str(pj, "file", where);
    if (!safe_relative_path(p.file)) fail(where + ".file", "'" + p.file + "' must be a relative path inside the bundle");
    p.sha256 = str(pj, "sha256", where);
    if (p.sha256.size() != 64 ||
        !std::all_of(p.sha256.begin(), p.sha256.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
      fail(where + ".sha256", "expected 64 lowercase hex digits");
    p.inputs = tensors(pj, "inputs", where, false);
    p.outputs = tensors(pj, "outputs", where, false);
    p.state = tensors(pj, "state", where, true);
    if (p.inputs.empty() || p.outputs.empty()) fail(where, "a program needs at least one input and one output");
    if ((p.mode == "stream" || p.mode == "aggregate") && p.state.empty()) fail(where, "a " + p.mode + " program needs its state tensors");
    if ((p.role == "aggregator") != (p.mode == "aggregate")) fail(where, "the aggregator program, and only it, has mode 'aggregate'");
    if ((p.role == "expensive" || p.role == "cheap") && (p.mode != "clip" || p.outputs.size() < 2))
      fail(where, "a FASTER " + p.role + " program is a clip program returning (logits, features)");
    if (p.outputs[0].shape.back() != static_cast<int64_t>(m.labels.size()))
      fail(where + ".outputs[0]", "logits have " + std::to_string(p.outputs[0].shape.back()) + " classes but there are " +
                                      std::to_string(m.labels.size()) + " labels");
    m.programs.push_back(std::move(p));
  }
  const Json& golden = member(root, "golden", "manifest", Json::Type::Object);
  m.golden_file = str(golden, "file", "golden");
  if (!safe_relative_path(m.golden_file)) fail("golden.file", "must be a relative path inside the bundle");
  m.golden_sha256 = str(golden, "sha256", "golden");
  const Json* faster = root.find("faster");
  if (faster && !faster->is_null()) {
    m.has_faster = true;
    Faster& f = m.faster;
    f.schedule = str(*faster, "schedule", "faster");
    for (const Json& r : member(*faster, "pattern", "faster", Json::Type::Array).array) {
      if (!r.is_string() || (r.string != "expensive" && r.string != "cheap")) fail("faster.pattern", "expected expensive / cheap");
      f.pattern.push_back(r.string);
    }
    if (f.pattern.empty()) fail("faster.pattern", "expected a non-empty list");
    f.segment_frames = integer(*faster, "segment_frames", "faster");
    f.segments = integer(*faster, "segments", "faster");
    if (f.segment_frames < 1 || f.segment_frames > (1 << 20) || f.segments < 1) fail("faster", "segment_frames and segments must be >= 1");
    const Json& models = member(*faster, "clip_models", "faster", Json::Type::Object);
    for (const auto& kv : models.object) {
      if (kv.first != "expensive" && kv.first != "cheap") fail("faster.clip_models", "unknown role '" + kv.first + "'");
      std::string where = "faster.clip_models." + kv.first;
      ClipModel cm;
      cm.sampler = parse_sampler(kv.second, where);
      cm.input = input_spec(member(kv.second, "input", where, Json::Type::Object), where + ".input");
      f.clip_models[kv.first] = cm;
    }
    for (const auto& r : f.pattern)
      if (!f.clip_models.count(r)) fail("faster.clip_models", "the pattern uses '" + r + "' but it is not described");
    const Json* gate = faster->find("gate");
    if (gate && !gate->is_null()) {  // the adaptive schedule (schema 1.3)
      f.has_gate = true;
      f.gate = faster_gate(*gate);
      if (f.schedule != "adaptive" || f.pattern != std::vector<std::string>{"cheap"} || !f.clip_models.count("expensive"))
        fail("faster", "a gate goes with schedule 'adaptive', pattern ['cheap'] and both clip models");
    }
  }
  for (const auto& p : m.programs)
    if ((p.role != "model") != m.has_faster) fail("programs", "program roles do not match the presence of 'faster'");
  const Json* clip = root.find("clip");
  if (clip && !clip->is_null()) {
    m.has_clip = true;
    m.clip = training_clip(*clip);
  }
  return m;
}

}  // namespace ev
