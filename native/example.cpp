// The smallest app around a pocketvqe program: load it, read its metadata, call it every 10 ms with
// the state kept between calls, reset between calls. docs/native.md shows this file; the tests compile
// and run it. Usage: pocketvqe-example PROGRAM.pte [SECONDS]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "pocketvqe/log.h"
#include "pocketvqe/stream.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PROGRAM.pte [SECONDS]\n", argv[0]);
    return 2;
  }
  try {
    pocketvqe::Stream stream(argv[1]);                  // loads the program, checks its format
    const auto& m = stream.meta();                      // what the program says about itself
    std::printf("%s (%s): %lld Hz, hop %lld samples, %zu state tensors\n", m.model_name.c_str(),
                m.precision.c_str(), (long long)m.sample_rate, (long long)m.hop, stream.state_count());
    if (m.speaker_dim > 0) {                            // personalized: enroll the user's voice once
      std::vector<float> enrollment(5 * m.sample_rate); // (an app records ~5 s of the user speaking)
      for (size_t i = 0; i < enrollment.size(); ++i) enrollment[i] = 0.1f * std::sin(0.05f * i);
      stream.enroll(enrollment.data(), enrollment.size());
    }
    const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
    std::vector<float> mic(m.hop), far(m.hop), out(m.hop);
    double energy = 0;
    for (int call = 0; call < 2; ++call) {              // two calls, each a fresh stream
      stream.reset();                                   // the state back to zeros
      for (long t = 0; t < long(seconds * m.sample_rate / m.hop); ++t) {  // every 10 ms, from the audio callback:
        for (long i = 0; i < m.hop; ++i) mic[i] = 0.1f * std::sin(0.03f * (t * m.hop + i));
        stream.process(mic.data(), m.has_far ? far.data() : nullptr, out.data());
        for (float v : out) energy += double(v) * v;
      }
    }
    std::printf("ok: output energy %.6g\n", energy);
    return 0;
  } catch (const pocketvqe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
