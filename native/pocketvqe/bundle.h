// pocketvqe/bundle.h: read a bundled program (.bpte, ExecuTorch's bundled_program_schema.fbs, "BP08")
// and check a loaded program against its bundled cases, as ExecuTorch's verify_method_outputs does:
// every output must satisfy |got - expected| <= atol + rtol * |expected|.
//
// The ExecuTorch wheels ship no bundled-program library for C++, so the flatbuffer is read here
// directly; the schema is small (tables of vectors of tables), and every offset is bounds-checked.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "io.h"
#include "stream.h"

namespace pocketvqe {

// A bounds-checked view of one flatbuffer table (the wire format: a table starts with a signed
// offset back to its vtable; the vtable lists each field's offset inside the table, 0 = absent).
class FbTable {
 public:
  FbTable(const std::vector<char>& buf, size_t pos) : b_(buf), pos_(pos) {
    need(pos_, 4);
    vt_ = pos_ - static_cast<size_t>(get<int32_t>(pos_));
    need(vt_, 4);
    vt_len_ = get<uint16_t>(vt_);
  }
  // Absolute position of field ``id`` (0 when absent).
  size_t field(int id) const {
    const size_t at = 4 + 2 * static_cast<size_t>(id);
    if (at + 2 > vt_len_) return 0;
    const uint16_t off = get<uint16_t>(vt_ + at);
    return off ? pos_ + off : 0;
  }
  template <typename T>
  T scalar(int id, T fallback = T()) const {
    size_t p = field(id);
    return p ? get<T>(p) : fallback;
  }
  // The object an offset field points at (table, vector or string).
  size_t deref(int id) const {
    size_t p = field(id);
    if (!p) return 0;
    return indirect(p);
  }
  size_t indirect(size_t p) const {
    size_t q = p + get<uint32_t>(p);
    need(q, 4);
    return q;
  }
  uint32_t vec_len(size_t v) const { return get<uint32_t>(v); }
  std::string str(int id) const {
    size_t s = deref(id);
    if (!s) return "";
    uint32_t n = vec_len(s);
    need(s + 4, n);
    return std::string(b_.data() + s + 4, n);
  }
  // Element i of a vector of tables.
  FbTable table_at(size_t v, uint32_t i) const {
    if (i >= vec_len(v)) throw Error("bundled program: index out of range (the .bpte is corrupt)");
    return FbTable(b_, indirect(v + 4 + 4 * static_cast<size_t>(i)));
  }
  template <typename T>
  T get(size_t p) const {
    need(p, sizeof(T));
    T v;
    std::memcpy(&v, b_.data() + p, sizeof(T));
    return v;
  }
  void need(size_t p, size_t n) const {
    if (p > b_.size() || n > b_.size() - p) throw Error("the .bpte is truncated or corrupt (an offset points outside the file)");
  }
  const std::vector<char>& buf() const { return b_; }

 private:
  const std::vector<char>& b_;
  size_t pos_, vt_ = 0;
  uint16_t vt_len_ = 0;
};

struct BundledTensor {
  Shape sizes;
  std::vector<float> data;
};

struct BundledCase {
  std::vector<BundledTensor> inputs, expected;
};

struct BundledSuite {
  std::string method;
  std::vector<BundledCase> cases;
};

struct Bundle {
  std::vector<char> bytes;       // the whole .bpte
  size_t program_at = 0, program_len = 0;
  std::vector<BundledSuite> suites;
};

inline std::vector<BundledTensor> read_values(const FbTable& t, int id) {
  std::vector<BundledTensor> out;
  size_t v = t.deref(id);
  if (!v) return out;
  for (uint32_t i = 0; i < t.vec_len(v); ++i) {
    FbTable value = t.table_at(v, i);                      // table Value { val: ValueUnion }
    if (value.scalar<uint8_t>(0) != 1)                     // union tag 1 = Tensor (2 Int, 3 Bool, 4 Double)
      throw Error("the .bpte holds a non-tensor value: pocketvqe programs take and return float tensors only");
    FbTable tensor(t.buf(), value.deref(1));               // table Tensor { scalar_type, sizes, data, dim_order }
    if (tensor.scalar<int8_t>(0) != 6)                     // ScalarType FLOAT = 6
      throw Error("the .bpte holds a tensor that is not float32");
    BundledTensor bt;
    if (size_t s = tensor.deref(1))
      for (uint32_t k = 0; k < tensor.vec_len(s); ++k) bt.sizes.push_back(tensor.get<int32_t>(s + 4 + 4 * k));
    size_t d = tensor.deref(2);
    const size_t n = d ? tensor.vec_len(d) / 4 : 0;
    if (n != numel(bt.sizes)) throw Error("the .bpte is corrupt: a tensor's data does not match its sizes");
    tensor.need(d + 4, 4 * n);
    bt.data.resize(n);
    std::memcpy(bt.data.data(), t.buf().data() + d + 4, 4 * n);
    out.push_back(std::move(bt));
  }
  return out;
}

inline Bundle read_bundle(const std::string& path) {
  Bundle b;
  b.bytes = read_file(path);
  if (b.bytes.size() < 8 || std::memcmp(b.bytes.data() + 4, "BP08", 4)) {
    const bool pte = b.bytes.size() >= 8 && !std::memcmp(b.bytes.data() + 4, "ET12", 4);
    throw Error(path + (pte ? " is a program (.pte), not a bundled program: give the .bpte beside it"
                            : " is not a bundled program (.bpte, identifier BP08): it is truncated or another file"));
  }
  uint32_t root_at;                                               // the root table's offset, at byte 0
  std::memcpy(&root_at, b.bytes.data(), 4);
  FbTable root(b.bytes, root_at);
  size_t prog = root.deref(2);                                    // program: [ubyte]
  if (!prog) throw Error(path + " holds no program");
  b.program_len = root.vec_len(prog);
  b.program_at = prog + 4;
  root.need(b.program_at, b.program_len);
  size_t suites = root.deref(1);
  for (uint32_t i = 0; suites && i < root.vec_len(suites); ++i) {
    FbTable s = root.table_at(suites, i);
    BundledSuite suite{s.str(0), {}};
    size_t cases = s.deref(1);
    for (uint32_t j = 0; cases && j < s.vec_len(cases); ++j) {
      FbTable c = s.table_at(cases, j);
      suite.cases.push_back({read_values(c, 0), read_values(c, 1)});
    }
    b.suites.push_back(std::move(suite));
  }
  return b;
}

// Per method and output, over all of the method's cases: expected energy and error energy, in dB.
struct OutputSnr {
  std::string method;
  size_t output = 0;
  double energy = 0, noise = 0;
  double snr_db() const {
    if (std::isnan(noise)) return -INFINITY;
    if (noise == 0) return INFINITY;
    return energy > 0 ? 10.0 * std::log10(energy / noise) : -INFINITY;
  }
};

struct CaseResult {
  std::string method;
  size_t index = 0;
  double max_abs_err = 0, worst_excess = 0;   // worst |got-exp| - (atol + rtol|exp|); > 0 fails
  size_t worst_output = 0;
  bool pass = true;
};

// Runs every bundled case through the loaded program and compares every output k within
// atol[k] + rtol * |expected| (one atol for all outputs when ``atol`` holds one value): int8 programs
// check each output in its own units (the enhanced PCM tightly, a wide state in its own steps).
inline std::vector<CaseResult> verify_bundle(Stream& s, const Bundle& b, double rtol, const std::vector<double>& atol,
                                             std::vector<OutputSnr>* snr = nullptr) {
  std::vector<CaseResult> results;
  for (const auto& suite : b.suites) {
    const size_t first_snr = snr ? snr->size() : 0;
    for (size_t i = 0; i < suite.cases.size(); ++i) {
      const auto& c = suite.cases[i];
      std::vector<executorch::extension::TensorPtr> keep;
      std::vector<executorch::runtime::EValue> args;
      for (const auto& t : c.inputs) {
        keep.push_back(executorch::extension::from_blob(const_cast<float*>(t.data.data()), t.sizes));
        args.emplace_back(keep.back());
      }
      auto out = s.call(suite.method, args);
      CaseResult r{suite.method, i};
      r.worst_excess = -INFINITY;
      if (out.size() != c.expected.size()) throw Error(suite.method + " returns " + std::to_string(out.size()) +
                                                       " outputs, the bundle expects " + std::to_string(c.expected.size()));
      if (atol.size() != 1 && atol.size() != out.size())
        throw Error("--atol has " + std::to_string(atol.size()) + " values but " + suite.method + " returns " +
                    std::to_string(out.size()) + " outputs: give one value, or one per output");
      for (size_t k = 0; k < out.size(); ++k) {
        const auto& exp = c.expected[k];
        const double tol = atol.size() == 1 ? atol[0] : atol[k];
        if (snr && snr->size() < first_snr + out.size())
          for (size_t j = snr->size() - first_snr; j < out.size(); ++j) snr->push_back({suite.method, j});
        std::vector<float> got(exp.data.size());
        Stream::copy_tensor(out[k], got.data(), got.size(), "bundled");
        for (size_t e = 0; e < got.size(); ++e) {
          const double err = std::fabs(double(got[e]) - exp.data[e]);
          const double excess = err - (tol + rtol * std::fabs(double(exp.data[e])));
          if (!(err <= r.max_abs_err)) r.max_abs_err = err;   // NaN counts as the worst
          if (snr) {
            auto& o = (*snr)[first_snr + k];
            o.energy += double(exp.data[e]) * exp.data[e];
            o.noise += err * err;                              // NaN stays NaN: -inf dB
          }
          if (!(excess <= r.worst_excess)) r.worst_excess = excess, r.worst_output = k;
        }
      }
      r.pass = r.worst_excess <= 0;
      results.push_back(r);
    }
  }
  return results;
}

}  // namespace pocketvqe
