// pocketvqe/stream.h: run a pocketvqe program (.pte) one 10 ms hop at a time from C++.
//
// The whole app-side contract of a program (see the README's "The .pte contract"):
//   - constant methods describe it: format_version, model_name, precision, sample_rate, hop,
//     algorithmic_delay_samples, speaker_dim, state_names, state_shapes (JSON), enroll_state_shapes;
//   - forward(mic[hop], far[hop]?, speaker[D]?, *state) -> (enhanced[hop], *new_state): the state is
//     explicit, the caller keeps it and passes it back next hop; zeros start a stream;
//   - personalized programs also have enroll_step(pcm[hop], *acc) -> *acc and enroll_finish(*acc) -> speaker.
//
//   pocketvqe::Stream s("dvqe-s16-int8.pte");        // load, read and check the metadata
//   s.process(mic_hop, far_hop, out_hop);              // every 10 ms: hop samples in, hop samples out
//   s.reset();                                         // between calls: state back to zeros
//
// Errors throw pocketvqe::Error with a message that says what to do. Header-only: include it and
// link the ExecuTorch runtime, its optimized kernels and the XNNPACK backend (see native/CMakeLists.txt).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <unordered_set>
#include <vector>

#include <executorch/extension/data_loader/buffer_data_loader.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

namespace pocketvqe {

// The program format this runner reads (export/program.py FORMAT).
inline constexpr const char* kFormat = "pocketvqe-pte-2";

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Shape = std::vector<executorch::aten::SizesType>;

// "[[1, 160], [1, 2, 3, 161]]" -> {{1, 160}, {1, 2, 3, 161}}: the only JSON a program's metadata needs here.
inline std::vector<Shape> parse_shapes(const std::string& text) {
  std::vector<Shape> out;
  int depth = 0;
  long value = -1;
  for (char c : text) {
    if (c == '[') {
      if (++depth == 2) out.emplace_back();
    } else if (c >= '0' && c <= '9') {
      value = (value < 0 ? 0 : value * 10) + (c - '0');
    } else if (c == ',' || c == ']') {
      if (value >= 0 && depth == 2) out.back().push_back(static_cast<executorch::aten::SizesType>(value));
      value = -1;
      if (c == ']') --depth;
    } else if (c != ' ') {
      throw Error("state shapes are not a JSON list of int lists: " + text);
    }
  }
  return out;
}

inline std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

inline size_t numel(const Shape& s) {
  size_t n = 1;
  for (auto d : s) n *= static_cast<size_t>(d);
  return n;
}

// What the program says about itself (its constant methods).
struct Metadata {
  std::string format_version, pocketvqe_version, model_name, precision, recipe;
  int64_t sample_rate = 0, hop = 0, delay = 0, speaker_dim = 0;
  bool has_far = false;
  std::vector<std::string> input_names, state_names;
  std::vector<Shape> state_shapes, enroll_state_shapes;
};

// One method's tensors: our own float buffers, wrapped once (from_blob does not copy).
struct Slots {
  std::vector<std::vector<float>> data;
  std::vector<executorch::extension::TensorPtr> tensors;
  void add(const Shape& shape) {
    data.emplace_back(numel(shape), 0.0f);
    tensors.push_back(executorch::extension::from_blob(data.back().data(), shape));
  }
  void zero() {
    for (auto& d : data) std::fill(d.begin(), d.end(), 0.0f);
  }
};

class Stream {
 public:
  // Loads the program and checks it is a pocketvqe program this runner reads.
  explicit Stream(const std::string& path, std::unique_ptr<executorch::runtime::EventTracer> tracer = nullptr)
      : path_(path),
        owned_(std::make_unique<executorch::extension::Module>(must_exist(path), executorch::extension::Module::LoadMode::File,
                                                                std::move(tracer))),
        module_(*owned_) {
    init(path);
  }

  // A program already in memory (the one inside a .bpte); ``data`` must outlive the Stream.
  Stream(const std::string& name, const void* data, size_t size)
      : path_(name),
        owned_(std::make_unique<executorch::extension::Module>(
            std::make_unique<executorch::extension::BufferDataLoader>(data, size))),
        module_(*owned_) {
    init(name);
  }

 private:
  void init(const std::string& path) {
    if (module_.load() != executorch::runtime::Error::Ok)
      throw Error(path + " does not load as an ExecuTorch program: it is missing, truncated or corrupt; export it again");
    auto names = module_.method_names();
    if (!names.ok() || !names->count("forward") || !names->count("format_version"))
      throw Error(path + " is an ExecuTorch program but not a pocketvqe one (no forward/format_version): "
                  "export it with `pocketvqe export`");
    read_metadata(*names);
    if (module_.load_method("forward") != executorch::runtime::Error::Ok)
      throw Error(path + ": its forward method does not load (a backend or kernel is missing from this runner, "
                  "or the file is corrupt): export it again");
    in_ = inputs_of("forward");                         // mic, far?, speaker?, then the state, threaded
    n_signals_ = in_.data.size() - meta_.state_shapes.size();
    if (in_.data.size() != meta_.input_names.size() || n_signals_ < 1)
      throw Error(path + ": forward's inputs do not match its metadata: the file was edited; export it again");
    for (size_t k = 0; k < meta_.state_shapes.size(); ++k)
      if (in_.data[n_signals_ + k].size() != numel(meta_.state_shapes[k]))
        throw Error(path + ": state " + meta_.state_names[k] + " has another shape in forward than in its metadata: export it again");
    if (in_.data[0].size() != static_cast<size_t>(meta_.hop))
      throw Error(path + ": forward's mic input is not one hop (" + std::to_string(meta_.hop) + " samples): export it again");
  }


 public:
  // Zeroed float buffers shaped as ``method``'s inputs (its method metadata), wrapped as tensors.
  Slots inputs_of(const std::string& method) {
    auto info = module_.method_meta(method);
    if (!info.ok()) throw Error(path_ + " has no method " + method);
    Slots s;
    for (size_t i = 0; i < info->num_inputs(); ++i) {
      auto t = info->input_tensor_meta(i);
      if (!t.ok() || t->scalar_type() != executorch::aten::ScalarType::Float)
        throw Error(path_ + ": input " + std::to_string(i) + " of " + method + " is not a float tensor");
      auto sz = t->sizes();
      s.add(Shape(sz.begin(), sz.end()));
    }
    return s;
  }

  static const std::string& must_exist(const std::string& path) {
    if (FILE* f = std::fopen(path.c_str(), "rb")) std::fclose(f);
    else throw Error(path + " does not exist or cannot be read: export a program first (`pocketvqe export`) or check the path");
    return path;
  }

  const Metadata& meta() const { return meta_; }
  size_t state_count() const { return meta_.state_shapes.size(); }
  std::vector<float>& state(size_t k) { return in_.data[n_signals_ + k]; }

  // A new stream: state back to zeros (the speaker embedding is kept).
  void reset() {
    for (size_t k = 0; k < state_count(); ++k) std::fill(state(k).begin(), state(k).end(), 0.0f);
  }

  void set_speaker(const float* speaker) {
    if (meta_.speaker_dim == 0) throw Error(meta_.model_name + " is not personalized: it takes no speaker");
    std::memcpy(in_.data[n_signals_ - 1].data(), speaker, sizeof(float) * meta_.speaker_dim);  // the last signal
  }

  // Enrollment through the program's own enroll_step / enroll_finish; sets and returns the speaker.
  std::vector<float> enroll(const float* pcm, size_t n) {
    if (meta_.speaker_dim == 0) throw Error(meta_.model_name + " is not personalized: it takes no enrollment");
    Slots in = inputs_of("enroll_step");                // pcm[hop], then the accumulator, threaded
    std::vector<executorch::runtime::EValue> args;
    for (auto& t : in.tensors) args.emplace_back(t);
    const size_t hop = static_cast<size_t>(meta_.hop);
    for (size_t t = 0; t * hop < n; ++t) {               // zero-padded to whole hops, as Enhancer.enroll
      size_t k = std::min(hop, n - t * hop);
      std::fill(in.data[0].begin(), in.data[0].end(), 0.0f);
      std::memcpy(in.data[0].data(), pcm + t * hop, sizeof(float) * k);
      auto acc = call("enroll_step", args);
      for (size_t j = 1; j < in.data.size(); ++j)
        copy_tensor(acc.at(j - 1), in.data[j].data(), in.data[j].size(), "enrollment state");
    }
    args.erase(args.begin());                           // enroll_finish(*acc)
    auto out = call("enroll_finish", args);
    std::vector<float> speaker(meta_.speaker_dim);
    copy_tensor(out.at(0), speaker.data(), speaker.size(), "enroll_finish output");
    set_speaker(speaker.data());
    return speaker;
  }

  // One hop: mic[hop] (and far[hop], silence if null) -> out[hop]; the state is carried to the next call.
  void process(const float* mic, const float* far, float* out) {
    std::memcpy(in_.data[0].data(), mic, sizeof(float) * meta_.hop);
    if (meta_.has_far) {
      if (far) std::memcpy(in_.data[1].data(), far, sizeof(float) * meta_.hop);
      else std::fill(in_.data[1].begin(), in_.data[1].end(), 0.0f);
    }
    if (args_.empty())
      for (auto& t : in_.tensors) args_.emplace_back(t);
    auto y = call("forward", args_);
    copy_tensor(y.at(0), out, meta_.hop, "enhanced");
    for (size_t k = 0; k < state_count(); ++k)           // output k+1 is the new state k
      copy_tensor(y.at(1 + k), state(k).data(), state(k).size(), meta_.state_names.at(k).c_str());
  }

  // Any method on explicit inputs (the harness's job mode and the bundled self-check use it).
  std::vector<executorch::runtime::EValue> call(const std::string& method, const std::vector<executorch::runtime::EValue>& args) {
    auto r = module_.execute(method, args);
    if (!r.ok())
      throw Error(path_ + ": " + method + " failed (ExecuTorch error " + std::to_string(static_cast<int>(r.error())) +
                  "): check the inputs' shapes against the program's metadata");
    return std::move(*r);
  }

  executorch::extension::Module& module() { return module_; }

  static void copy_tensor(const executorch::runtime::EValue& v, float* dst, size_t n, const char* what) {
    if (!v.isTensor() || v.toTensor().scalar_type() != executorch::aten::ScalarType::Float ||
        static_cast<size_t>(v.toTensor().numel()) != n)
      throw Error(std::string("output ") + what + " is not a float tensor of " + std::to_string(n) + " elements");
    std::memcpy(dst, v.toTensor().const_data_ptr<float>(), sizeof(float) * n);
  }

 private:
  std::string text(const std::string& name) {
    auto r = module_.execute(name);
    if (!r.ok() || r->size() != 1 || !(*r)[0].isString()) throw Error(path_ + ": metadata " + name + " is not a string");
    return std::string((*r)[0].toString());
  }
  int64_t integer(const std::string& name) {
    auto r = module_.execute(name);
    if (!r.ok() || r->size() != 1 || !(*r)[0].isInt()) throw Error(path_ + ": metadata " + name + " is not an int");
    return (*r)[0].toInt();
  }

  void read_metadata(const std::unordered_set<std::string>& names) {
    meta_.format_version = text("format_version");
    meta_.pocketvqe_version = names.count("pocketvqe_version") ? text("pocketvqe_version") : "?";
    if (meta_.format_version != kFormat)
      throw Error(path_ + " has program format '" + meta_.format_version + "' (pocketvqe " + meta_.pocketvqe_version +
                  "); this runner reads '" + kFormat + "': re-export it with this pocketvqe or build the runner of its version");
    meta_.model_name = text("model_name");
    meta_.precision = text("precision");
    meta_.recipe = text("recipe");
    meta_.sample_rate = integer("sample_rate");
    meta_.hop = integer("hop");
    meta_.delay = integer("algorithmic_delay_samples");
    meta_.speaker_dim = integer("speaker_dim");
    meta_.input_names = split_names(text("input_names"));
    meta_.has_far = meta_.input_names.size() > 1 && meta_.input_names[1] == "far";
    meta_.state_names = split_names(text("state_names"));
    meta_.state_shapes = parse_shapes(text("state_shapes"));
    meta_.enroll_state_shapes = parse_shapes(text("enroll_state_shapes"));
    if (meta_.hop <= 0 || meta_.sample_rate <= 0 || meta_.state_names.size() != meta_.state_shapes.size())
      throw Error(path_ + ": its metadata is inconsistent (hop, rate or state names/shapes): export it again");
  }

  std::string path_;
  std::unique_ptr<executorch::extension::Module> owned_;
  executorch::extension::Module& module_;
  Metadata meta_;
  Slots in_;
  size_t n_signals_ = 1;
  std::vector<executorch::runtime::EValue> args_;
};

}  // namespace pocketvqe
