// pocketvqe-runner: the native streaming runner of pocketvqe programs (.pte / .bpte), no Python.
//
//   pocketvqe-runner info     PROGRAM.pte                       the program's metadata, as JSON
//   pocketvqe-runner enhance  PROGRAM.pte --mic M.wav [--far F.wav] [--enroll E.wav | --speaker S.npy]
//                             --out Y.wav [--json LAT.json] [--threads N] [--warmup W] [--etdump D.etdp] [--pcm16]
//   pocketvqe-runner verify   BUNDLE.bpte --rtol R --atol A[,..] [--min-snr-db S[,..]] [--method M]  run the bundled cases; exit 1 on a mismatch
//   pocketvqe-runner job      JOB_DIR [--out OUT]               the test harness's job folder (device_tests)
//
// enhance streams the WAV through the program hop by hop, as an app would (pocketvqe/stream.h), and
// writes the output aligned to the input (the algorithmic delay removed), same length; --json gets
// the per-hop latency (p50/p90/p99/max, deadline misses against the hop), load time and peak RSS.
// Errors print one line, "pocketvqe-runner: error: ...", and exit 1 (2 for usage).
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <executorch/devtools/etdump/etdump_flatcc.h>

#include "pocketvqe/bundle.h"
#include "pocketvqe/io.h"
#include "pocketvqe/log.h"
#include "pocketvqe/stream.h"

#ifndef POCKETVQE_ET_VERSION
#define POCKETVQE_ET_VERSION "unknown"
#endif

// The wheels ship the thread pool library but not its header: these are its two entry points used here.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

using pocketvqe::Error;
using Clock = std::chrono::steady_clock;

struct Usage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: pocketvqe-runner info PROGRAM.pte\n"
    "       pocketvqe-runner enhance PROGRAM.pte --mic M.wav [--far F.wav] [--enroll E.wav | --speaker S.npy]\n"
    "                        --out Y.wav [--json LAT.json] [--threads N] [--warmup W] [--etdump D.etdp] [--pcm16] [--channel K]\n"
    "       pocketvqe-runner verify BUNDLE.bpte --rtol R --atol A[,A1,...] [--min-snr-db S[,S1,...]] [--method NAME]\n"
    "       pocketvqe-runner job JOB_DIR [--out OUT_DIR]\n";

// argv after the subcommand: one positional, then --flag value pairs (or --switch).
struct Args {
  std::string positional;
  std::map<std::string, std::string> flags;
  Args(int argc, char** argv, const std::vector<std::string>& switches) {
    for (int i = 2; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) == 0) {
        if (std::find(switches.begin(), switches.end(), a) != switches.end()) flags[a] = "1";
        else if (i + 1 < argc) flags[a] = argv[++i];
        else throw Usage(a + " needs a value");
      } else if (positional.empty()) {
        positional = a;
      } else {
        throw Usage("unexpected argument " + a);
      }
    }
    if (positional.empty()) throw Usage("give the file to run");
  }
  std::string get(const std::string& k, const std::string& fallback = "") const {
    auto it = flags.find(k);
    return it == flags.end() ? fallback : it->second;
  }
  bool has(const std::string& k) const { return flags.count(k) > 0; }
  long number(const std::string& k, long fallback) const {
    if (!has(k)) return fallback;
    char* end = nullptr;
    long v = std::strtol(get(k).c_str(), &end, 10);
    if (*end || v < 0) throw Usage(k + " takes a whole number >= 0, got " + get(k));
    return v;
  }
  double real(const std::string& k, double fallback) const {
    if (!has(k)) return fallback;
    char* end = nullptr;
    double v = std::strtod(get(k).c_str(), &end);
    if (*end || !(v >= 0)) throw Usage(k + " takes a number >= 0, got " + get(k));
    return v;
  }
  void only(const std::vector<std::string>& known) const {
    for (auto& [k, v] : flags)
      if (std::find(known.begin(), known.end(), k) == known.end()) throw Usage("unknown option " + k);
  }
};

// This process's peak resident memory (KiB): VmHWM of /proc/self/status, which starts afresh at exec
// (getrusage's ru_maxrss carries the parent's peak across fork + exec: a runner started from Python
// would report Python's peak).
long peak_rss_kb() {
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kb = -1;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    std::fclose(f);
    if (kb >= 0) return kb;
  }
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

std::string arch() {
  utsname u{};
  uname(&u);
  return u.machine;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream o;
  o.precision(6);
  o << v;
  return o.str();
}

int set_threads(long n) {
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (!pool) return 0;
  if (n > 0) pool->_unsafe_reset_threadpool(static_cast<uint32_t>(n));
  return static_cast<int>(pool->get_thread_count());
}

std::string runtime_json(int threads) {
  return "\"runtime\": \"executorch (native, pocketvqe-runner)\", \"et_version\": " + quote(POCKETVQE_ET_VERSION) +
         ", \"arch\": " + quote(arch()) + ", \"threads\": " + std::to_string(threads);
}

std::string latency_json(std::vector<double> us, double hop_us) {
  if (us.empty()) return "null";
  const size_t misses = std::count_if(us.begin(), us.end(), [&](double t) { return t > hop_us; });
  const double mean = std::accumulate(us.begin(), us.end(), 0.0) / us.size();
  std::sort(us.begin(), us.end());
  auto pct = [&](double q) {  // linear interpolation, as numpy.percentile
    double pos = q / 100.0 * (us.size() - 1);
    size_t lo = static_cast<size_t>(pos);
    size_t hi = std::min(lo + 1, us.size() - 1);
    return us[lo] + (us[hi] - us[lo]) * (pos - lo);
  };
  return "{\"n\": " + std::to_string(us.size()) + ", \"mean\": " + num(mean) + ", \"p50\": " + num(pct(50)) +
         ", \"p90\": " + num(pct(90)) + ", \"p99\": " + num(pct(99)) + ", \"max\": " + num(us.back()) +
         ", \"hop_us\": " + num(hop_us) + ", \"deadline_misses\": " + std::to_string(misses) + "}";
}

std::string meta_json(const pocketvqe::Metadata& m) {
  return "\"model_name\": " + quote(m.model_name) + ", \"precision\": " + quote(m.precision) +
         ", \"recipe\": " + quote(m.recipe) + ", \"format_version\": " + quote(m.format_version) +
         ", \"pocketvqe_version\": " + quote(m.pocketvqe_version) + ", \"sample_rate\": " + std::to_string(m.sample_rate) +
         ", \"hop\": " + std::to_string(m.hop) + ", \"algorithmic_delay_samples\": " + std::to_string(m.delay) +
         ", \"speaker_dim\": " + std::to_string(m.speaker_dim) + ", \"has_far\": " + (m.has_far ? "true" : "false") +
         ", \"n_state\": " + std::to_string(m.state_shapes.size());
}

int cmd_info(const Args& a) {
  a.only({});
  pocketvqe::Stream s(a.positional);
  std::printf("{%s, %s}\n", meta_json(s.meta()).c_str(), runtime_json(set_threads(0)).c_str());
  return 0;
}

// channel < 0: the file must be mono (or --channel given).
pocketvqe::Wav input_wav(const std::string& path, const pocketvqe::Metadata& m, int channel, const char* what) {
  auto w = pocketvqe::read_wav(path, channel < 0 ? 0 : channel);
  if (w.rate != m.sample_rate)
    throw Error(path + " is " + std::to_string(w.rate) + " Hz; " + m.model_name + " runs at " + std::to_string(m.sample_rate) +
                " Hz: resample it (e.g. `ffmpeg -i IN -ar " + std::to_string(m.sample_rate) + " OUT.wav`)");
  if (w.channels != 1 && channel < 0)
    throw Error(path + " has " + std::to_string(w.channels) + " channels: pick the " + what +
                " channel with --channel K (0-based), or give a mono file");
  if (w.samples.size() < static_cast<size_t>(m.hop))
    throw Error(path + " holds " + std::to_string(w.samples.size()) + " samples, less than one " +
                std::to_string(m.hop) + "-sample hop: give a longer " + what + " recording");
  return w;
}

int cmd_enhance(const Args& a) {
  a.only({"--mic", "--far", "--enroll", "--speaker", "--out", "--json", "--threads", "--warmup", "--etdump", "--pcm16", "--channel"});
  if (!a.has("--mic") || !a.has("--out")) throw Usage("enhance needs --mic M.wav and --out Y.wav");
  if (a.get("--out") == a.get("--mic") || (a.has("--far") && a.get("--out") == a.get("--far")))
    throw Error("--out " + a.get("--out") + " is an input: give another output path (inputs are never overwritten)");
  const int threads = set_threads(a.number("--threads", 1));
  executorch::etdump::ETDumpGen* tracer = nullptr;
  std::unique_ptr<executorch::runtime::EventTracer> owned;
  if (a.has("--etdump")) {
    auto gen = std::make_unique<executorch::etdump::ETDumpGen>();
    tracer = gen.get();
    owned = std::move(gen);
  }
  const auto t0 = Clock::now();
  pocketvqe::Stream s(a.positional, std::move(owned));
  const double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const auto& m = s.meta();
  const int channel = a.has("--channel") ? static_cast<int>(a.number("--channel", 0)) : -1;
  auto mic = input_wav(a.get("--mic"), m, channel, "mic");
  std::vector<float> far;
  if (a.has("--far")) {
    if (!m.has_far) throw Error(m.model_name + " has no far-end input: drop --far");
    far = input_wav(a.get("--far"), m, -1, "far-end").samples;
  }
  if (m.speaker_dim > 0) {
    if (a.has("--enroll")) {
      auto e = input_wav(a.get("--enroll"), m, -1, "enrollment");
      s.enroll(e.samples.data(), e.samples.size());
    } else if (a.has("--speaker")) {
      auto spk = pocketvqe::read_npy(a.get("--speaker"));
      if (spk.data.size() != static_cast<size_t>(m.speaker_dim))
        throw Error(a.get("--speaker") + " holds " + std::to_string(spk.data.size()) + " values; the speaker embedding has " +
                    std::to_string(m.speaker_dim));
      s.set_speaker(spk.data.data());
    } else {
      throw Error(m.model_name + " is personalized: give --enroll ENROLL.wav (or --speaker S.npy)");
    }
  } else if (a.has("--enroll") || a.has("--speaker")) {
    throw Error(m.model_name + " is not personalized: drop --enroll/--speaker");
  }
  // Pad as pocketvqe.signals.pad_for_stream: whole hops covering the clip plus the algorithmic delay.
  const size_t hop = m.hop, n = mic.samples.size(), delay = m.delay;
  const size_t total = (n + delay + hop - 1) / hop * hop;
  mic.samples.resize(total, 0.0f);
  if (m.has_far) far.resize(total, 0.0f);
  std::vector<float> y(total);
  const size_t frames = total / hop, warmup = std::min<size_t>(a.number("--warmup", 0), frames);
  for (size_t t = 0; t < warmup; ++t)  // warm caches and the thread pool on the clip itself, then start over
    s.process(&mic.samples[t * hop], m.has_far ? &far[t * hop] : nullptr, &y[t * hop]);
  s.reset();
  std::vector<double> us(frames);
  for (size_t t = 0; t < frames; ++t) {
    const auto a0 = Clock::now();
    s.process(&mic.samples[t * hop], m.has_far ? &far[t * hop] : nullptr, &y[t * hop]);
    us[t] = std::chrono::duration<double, std::micro>(Clock::now() - a0).count();
  }
  std::vector<float> aligned(y.begin() + delay, y.begin() + delay + n);
  pocketvqe::write_wav(a.get("--out"), aligned, static_cast<int>(m.sample_rate), a.has("--pcm16"));
  const std::string report = "{\"program\": " + quote(a.positional) + ", " + meta_json(m) + ", " + runtime_json(threads) +
                             ", \"frames\": " + std::to_string(frames) + ", \"warmup\": " + std::to_string(warmup) +
                             ", \"load_ms\": " + num(load_ms) + ", \"peak_rss_kb\": " + std::to_string(peak_rss_kb()) +
                             ", \"per_frame_us\": " + latency_json(us, 1e6 * hop / m.sample_rate) + "}";
  if (a.has("--json")) pocketvqe::write_text_atomic(a.get("--json"), report + "\n");
  if (tracer) {
    auto d = tracer->get_etdump_data();
    if (!d.buf || !d.size) throw Error("the ETDump is empty: this runtime was built without the event tracer");
    pocketvqe::write_file_atomic(a.get("--etdump"), d.buf, d.size);
    std::free(d.buf);
  }
  std::printf("%s\n", report.c_str());
  return 0;
}

// "A" or "A0,A1,...": numbers >= ``lowest`` (a bad item is a usage error naming the flag).
std::vector<double> number_list(const std::string& text, const std::string& flag, double lowest) {
  std::vector<double> out;
  for (size_t at = 0; at <= text.size();) {
    size_t comma = std::min(text.find(',', at), text.size());
    std::string item = text.substr(at, comma - at);
    char* end = nullptr;
    double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end || !(v >= lowest)) throw Usage(flag + " " + text + ": give a number, or a comma list of them");
    out.push_back(v);
    at = comma + 1;
  }
  return out;
}

std::string list_json(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += std::string(s.empty() ? "" : ", ") + num(x);
  return v.size() == 1 ? s : "[" + s + "]";
}

int cmd_verify(const Args& a) {
  a.only({"--rtol", "--atol", "--min-snr-db", "--threads", "--method"});
  set_threads(a.number("--threads", 1));
  auto b = pocketvqe::read_bundle(a.positional);
  if (a.has("--method")) {             // one method's cases (each method has its own tolerances)
    std::vector<pocketvqe::BundledSuite> keep;
    for (auto& s : b.suites)
      if (s.method == a.get("--method")) keep.push_back(s);
    if (keep.empty()) throw Error(a.positional + " holds no cases for method " + a.get("--method"));
    b.suites = keep;
  }
  pocketvqe::Stream s(a.positional, b.bytes.data() + b.program_at, b.program_len);
  // Tolerances: the manifest's per-method bundle tolerances (export writes them; pocketvqe passes them).
  // --atol A (every output) or A0,A1,... (one per output, in the method's output order); the same for
  // --min-snr-db (each output's SNR over the method's cases; optional, -inf when not given).
  const double rtol = a.real("--rtol", -1);
  std::vector<double> atol = a.has("--atol") ? number_list(a.get("--atol"), "--atol", 0) : std::vector<double>{};
  std::vector<double> min_snr = a.has("--min-snr-db") ? number_list(a.get("--min-snr-db"), "--min-snr-db", -INFINITY)
                                                      : std::vector<double>{-INFINITY};
  if (rtol < 0 || atol.empty()) throw Usage("verify needs --rtol and --atol (the manifest's bundle tolerances of this program)");
  std::vector<pocketvqe::OutputSnr> snr;
  auto results = pocketvqe::verify_bundle(s, b, rtol, atol, &snr);
  bool snr_ok = true;
  std::string snr_json;
  for (size_t i = 0; i < snr.size(); ++i) {
    size_t k = snr[i].output;
    if (min_snr.size() != 1 && min_snr.size() <= k)
      throw Usage("--min-snr-db has " + std::to_string(min_snr.size()) + " values but " + snr[i].method + " has more outputs");
    const double bound = min_snr.size() == 1 ? min_snr[0] : min_snr[k];
    const bool ok_k = snr[i].snr_db() >= bound;
    snr_ok = snr_ok && ok_k;
    snr_json += std::string(snr_json.empty() ? "" : ", ") + "{\"method\": " + quote(snr[i].method) + ", \"output\": " +
                std::to_string(k) + ", \"snr_db\": " + num(snr[i].snr_db()) + ", \"pass\": " + (ok_k ? "true" : "false") + "}";
  }
  std::string atol_json = list_json(atol), snr_bound_json = list_json(min_snr);
  bool ok = !results.empty() && snr_ok;
  std::string cases;
  for (auto& r : results) {
    ok = ok && r.pass;
    cases += std::string(cases.empty() ? "" : ", ") + "{\"method\": " + quote(r.method) + ", \"case\": " +
             std::to_string(r.index) + ", \"max_abs_err\": " + num(r.max_abs_err) + ", \"worst_output\": " +
             std::to_string(r.worst_output) + ", \"pass\": " + (r.pass ? "true" : "false") + "}";
  }
  std::printf("{\"bundle\": %s, %s, \"rtol\": %s, \"atol\": %s, \"min_snr_db\": %s, \"pass\": %s, \"cases\": [%s], "
              "\"outputs\": [%s]}\n", quote(a.positional).c_str(), meta_json(s.meta()).c_str(), num(rtol).c_str(),
              atol_json.c_str(), snr_bound_json.c_str(), ok ? "true" : "false", cases.c_str(), snr_json.c_str());
  if (results.empty()) std::fprintf(stderr, "pocketvqe-runner: error: %s holds no test cases\n", a.positional.c_str());
  else if (!ok) std::fprintf(stderr, "pocketvqe-runner: error: bundled self-check FAILED (outside rtol=%g, atol=%s, min SNR %s dB)\n", rtol,
                    atol_json.c_str(), snr_bound_json.c_str());
  return ok ? 0 : 1;
}

// Minimal reader of the flat job.json the harness writes ({"key": number|string|bool, ...}).
std::string job_field(const std::string& text, const std::string& key, const std::string& fallback = "") {
  size_t k = text.find("\"" + key + "\"");
  if (k == std::string::npos) return fallback;
  size_t c = text.find(':', k);
  size_t b = text.find_first_not_of(" ", c + 1);
  if (text[b] == '"') return text.substr(b + 1, text.find('"', b + 1) - b - 1);
  size_t e = text.find_first_of(",}", b);
  std::string v = text.substr(b, e - b);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\n')) v.pop_back();
  return v;
}

int cmd_job(const Args& a) {
  a.only({"--out"});
  const std::string dir = a.positional, out = a.get("--out", dir + "/out");
  auto raw = pocketvqe::read_file(dir + "/job.json");
  const std::string job(raw.begin(), raw.end());
  if (job_field(job, "version") != "1") throw Error("job version " + job_field(job, "version") + " is not 1: rebuild the runner");
  const std::string method = job_field(job, "method", "forward");
  const size_t n_state = std::stoul(job_field(job, "n_state")), n_inputs = std::stoul(job_field(job, "n_inputs"));
  const bool time_it = job_field(job, "time_it") == "true";
  const long warmup = std::stol(job_field(job, "warmup", "0"));
  const std::string threads_req = job_field(job, "threads", "1");
  const int threads = set_threads(threads_req == "null" ? 1 : std::stol(threads_req));
  std::vector<pocketvqe::Npy> in, state;
  for (size_t k = 0; k < n_inputs; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "/in_%02zu.npy", k);
    in.push_back(pocketvqe::read_npy(dir + name));
  }
  for (size_t k = 0; k < n_state; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "/state_%02zu.npy", k);
    state.push_back(pocketvqe::read_npy(dir + name));
  }
  const size_t frames = in.empty() ? std::stoul(job_field(job, "n_frames")) : in[0].shape.at(0);
  const long rss_before = peak_rss_kb();
  const auto t0 = Clock::now();
  auto mod = std::make_unique<executorch::extension::Module>(dir + "/model.pte");
  if (mod->load_method(method) != executorch::runtime::Error::Ok)
    throw Error("method " + method + " of " + dir + "/model.pte does not load: the program is corrupt or needs another runtime");
  const double load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  // Frame t's inputs: slice t of every stacked input (our buffers), then the state (our buffers).
  std::vector<std::vector<float>> slot(n_inputs);
  std::vector<executorch::extension::TensorPtr> tensors;
  for (size_t k = 0; k < n_inputs; ++k) {
    pocketvqe::Shape shape(in[k].shape.begin() + 1, in[k].shape.end());
    slot[k].resize(pocketvqe::numel(shape));
    tensors.push_back(executorch::extension::from_blob(slot[k].data(), shape));
  }
  for (auto& s : state) tensors.push_back(executorch::extension::from_blob(s.data.data(), s.shape));
  std::vector<executorch::runtime::EValue> args;
  for (auto& t : tensors) args.emplace_back(t);
  auto load = [&](size_t t) {
    for (size_t k = 0; k < n_inputs; ++k) std::copy_n(in[k].data.begin() + t * slot[k].size(), slot[k].size(), slot[k].begin());
  };
  auto run = [&]() {
    auto r = mod->execute(method, args);
    if (!r.ok()) throw Error(method + " failed (ExecuTorch error " + std::to_string(static_cast<int>(r.error())) + ")");
    if (r->size() < n_state) throw Error(method + " returned fewer outputs than n_state");
    return std::move(*r);
  };
  std::vector<pocketvqe::Npy> init = state;
  load(0);
  for (long w = 0; w < warmup; ++w) run();  // state inputs are ours and unchanged: warm-up leaves the run untouched
  std::vector<pocketvqe::Npy> outs;
  std::vector<double> us;
  for (size_t t = 0; t < frames; ++t) {
    load(t);
    const auto a0 = Clock::now();
    auto r = run();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a0).count());
    const size_t n_out = r.size() - n_state;
    for (size_t k = 0; k < n_out; ++k) {
      if (!r[k].isTensor() || r[k].toTensor().scalar_type() != executorch::aten::ScalarType::Float)
        throw Error("output " + std::to_string(k) + " is not a float tensor");
      const auto& tt = r[k].toTensor();
      if (t == 0) {
        pocketvqe::Npy o;
        o.shape = {static_cast<executorch::aten::SizesType>(frames)};
        for (auto d : tt.sizes()) o.shape.push_back(d);
        o.data.reserve(frames * tt.numel());
        outs.push_back(std::move(o));
      }
      const float* p = tt.const_data_ptr<float>();
      outs[k].data.insert(outs[k].data.end(), p, p + tt.numel());
    }
    for (size_t k = 0; k < n_state; ++k)  // the new state becomes next frame's input (our buffer)
      pocketvqe::Stream::copy_tensor(r[n_out + k], state[k].data.data(), state[k].data.size(), "state");
  }
  std::string mk = "mkdir -p '" + out + "'";
  if (std::system(mk.c_str()) != 0) throw Error("cannot create " + out);
  for (size_t k = 0; k < outs.size(); ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "/out_%02zu.npy", k);
    pocketvqe::write_npy(out + name, outs[k].shape, outs[k].data.data());
  }
  for (size_t k = 0; k < n_state; ++k) {
    char name[40];
    std::snprintf(name, sizeof name, "/final_state_%02zu.npy", k);
    pocketvqe::write_npy(out + name, state[k].shape, state[k].data.data());
  }
  std::string per_frame = "null";
  if (time_it) {
    per_frame = "[";
    for (size_t t = 0; t < us.size(); ++t) per_frame += (t ? ", " : "") + num(us[t]);
    per_frame += "]";
  }
  const std::string result = "{\"n_frames\": " + std::to_string(frames) + ", \"n_outputs\": " + std::to_string(outs.size()) +
      ", \"n_state\": " + std::to_string(n_state) + ", \"method\": " + quote(method) + ", \"load_ms\": " + num(load_ms) +
      ", \"per_frame_us\": " + per_frame + ", \"timing\": " +
      quote(time_it ? "steady_clock around each Module::execute (native runner: no conversions)" : "not timed") +
      ", \"peak_rss_kb\": " + std::to_string(peak_rss_kb()) + ", \"rss_before_load_kb\": " + std::to_string(rss_before) +
      ", \"runtime\": \"pocketvqe-runner\", \"runtime_version\": " + quote(POCKETVQE_ET_VERSION) +
      ", \"et_version\": " + quote(POCKETVQE_ET_VERSION) + ", \"arch\": " + quote(arch()) +
      ", \"threads_requested\": " + threads_req + ", \"threads_applied\": " + std::to_string(threads) + "}";
  pocketvqe::write_text_atomic(out + "/result.json", result);
  std::printf("POCKETVQE_RUNNER_OK {\"n_frames\": %zu, \"n_outputs\": %zu, \"load_ms\": %s}\n", frames, outs.size(),
              num(load_ms).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "info") return cmd_info(Args(argc, argv, {}));
    if (cmd == "enhance") return cmd_enhance(Args(argc, argv, {"--pcm16"}));
    if (cmd == "verify") return cmd_verify(Args(argc, argv, {}));
    if (cmd == "job") return cmd_job(Args(argc, argv, {}));
    if (cmd == "-h" || cmd == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    throw Usage(cmd.empty() ? "give a command" : "unknown command " + cmd);
  } catch (const Usage& e) {
    std::fprintf(stderr, "%spocketvqe-runner: error: %s\n", kUsage, e.what());
    return 2;
  } catch (const std::exception& e) {
    if (cmd == "job") std::printf("POCKETVQE_RUNNER_ERROR: %s\n", e.what());
    std::fprintf(stderr, "pocketvqe-runner: error: %s\n", e.what());
    return 1;
  }
}
