#include "runner.hpp"

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <cstring>

#include "error.hpp"

namespace ev {

namespace et = executorch::runtime;
using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;

struct Runner::Impl {
  explicit Impl(const std::string& path) : module(path, Module::LoadMode::File) {}
  Module module;
};

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

Runner::Runner(const std::string& path, const Program& program) : program_(program) {
  for (const auto* list : {&program.inputs, &program.state})
    for (const auto& t : *list) {
      if (t.dtype != "float32")
        throw Error(EV_ERR_UNSUPPORTED, "program '" + program.id + "': input " + t.name + " is " + t.dtype +
                                            "; the native core feeds float32 (quantized I/O is not supported)");
      shapes_.push_back(t.shape);
    }
  impl_ = std::make_unique<Impl>(path);
  et::Error err = impl_->module.load_method("forward");
  if (err != et::Error::Ok)
    throw Error(EV_ERR_RUNTIME, "cannot load the executorch program " + path + " (error " +
                                    std::to_string(static_cast<int>(err)) +
                                    "): not a .pte file, damaged, or it needs a delegate/kernel this build lacks");
  auto meta = impl_->module.method_meta("forward");
  if (!meta.ok()) throw Error(EV_ERR_RUNTIME, "cannot read the metadata of " + path);
  if (meta->num_inputs() != shapes_.size())
    throw Error(EV_ERR_BAD_BUNDLE, "program '" + program.id + "' takes " + std::to_string(meta->num_inputs()) +
                                       " inputs but the manifest lists " + std::to_string(shapes_.size()));
  for (size_t i = 0; i < shapes_.size(); ++i) {
    auto tm = meta->input_tensor_meta(i);
    if (!tm.ok()) throw Error(EV_ERR_BAD_BUNDLE, "program '" + program.id + "': input " + std::to_string(i) + " is not a tensor");
    std::vector<int64_t> got(tm->sizes().begin(), tm->sizes().end());
    if (got != shapes_[i] || tm->scalar_type() != ScalarType::Float)
      throw Error(EV_ERR_BAD_BUNDLE, "program '" + program.id + "': input " + std::to_string(i) + " is " +
                                         shape_str(got) + " in the file but " + shape_str(shapes_[i]) +
                                         " float32 in the manifest");
  }
  num_outputs_ = meta->num_outputs();
  if (num_outputs_ != program.outputs.size() + program.state.size())
    throw Error(EV_ERR_BAD_BUNDLE, "program '" + program.id + "' returns " + std::to_string(num_outputs_) +
                                       " outputs but the manifest lists " +
                                       std::to_string(program.outputs.size() + program.state.size()));
}

Runner::~Runner() = default;

std::vector<std::vector<float>> Runner::run(const std::vector<const float*>& inputs) {
  if (inputs.size() != shapes_.size()) throw Error(EV_ERR_INTERNAL, "wrong number of program inputs");
  std::vector<TensorPtr> tensors;
  std::vector<et::EValue> values;
  tensors.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<executorch::aten::SizesType> sizes(shapes_[i].begin(), shapes_[i].end());
    tensors.push_back(executorch::extension::from_blob(const_cast<float*>(inputs[i]), sizes, ScalarType::Float));
    values.emplace_back(*tensors.back());
  }
  auto result = impl_->module.execute("forward", values);
  if (!result.ok())
    throw Error(EV_ERR_RUNTIME, "program '" + program_.id + "' failed to execute (executorch error " +
                                    std::to_string(static_cast<int>(result.error())) + ")");
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < result->size(); ++i) {
    const et::EValue& v = (*result)[i];
    if (!v.isTensor()) throw Error(EV_ERR_RUNTIME, "program '" + program_.id + "': output " + std::to_string(i) + " is not a tensor");
    const auto& t = v.toTensor();
    if (t.scalar_type() != ScalarType::Float)
      throw Error(EV_ERR_UNSUPPORTED, "program '" + program_.id + "': output " + std::to_string(i) + " is not float32");
    const float* p = t.const_data_ptr<float>();
    out.emplace_back(p, p + t.numel());
  }
  return out;
}

}  // namespace ev
