// pocketvqe/io.h: the files the runner reads and writes. WAV (PCM 16/24/32-bit or float32, read;
// float32 or PCM16, written), NPY (float32, C order: the harness's job folders) and atomic writes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "stream.h"

namespace pocketvqe {

inline std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + " does not exist or cannot be read: check the path");
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Write to PATH.tmp, then rename: a reader never sees half a file, a failed run leaves none.
inline void write_file_atomic(const std::string& path, const void* data, size_t n) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error("cannot write " + path + ": check that its folder exists and is writable");
  bool ok = std::fwrite(data, 1, n, f) == n;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("writing " + path + " failed (disk full or read-only?)");
  }
}

inline void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

struct Wav {
  int rate = 0, channels = 0;
  std::vector<float> samples;  // one channel, [-1, 1]
};

template <typename T>
static T le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// A mono (or one chosen channel of a) RIFF/WAVE file; refuses what it cannot read, naming the fix.
inline Wav read_wav(const std::string& path, int channel = 0) {
  auto b = read_file(path);
  if (b.size() < 12 || std::memcmp(b.data(), "RIFF", 4) || std::memcmp(b.data() + 8, "WAVE", 4))
    throw Error(path + " is not a WAV file (no RIFF/WAVE header): convert it, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`");
  int fmt = 0, bits = 0;
  Wav w;
  size_t pos = 12, data_at = 0, data_len = 0;
  while (pos + 8 <= b.size()) {
    const uint32_t len = le<uint32_t>(b.data() + pos + 4);
    const char* id = b.data() + pos;
    if (!std::memcmp(id, "fmt ", 4) && len >= 16 && pos + 8 + 16 <= b.size()) {
      fmt = le<uint16_t>(b.data() + pos + 8);
      w.channels = le<uint16_t>(b.data() + pos + 10);
      w.rate = static_cast<int>(le<uint32_t>(b.data() + pos + 12));
      bits = le<uint16_t>(b.data() + pos + 22);
      if (fmt == 0xFFFE && len >= 40) fmt = le<uint16_t>(b.data() + pos + 32);  // WAVE_FORMAT_EXTENSIBLE
    } else if (!std::memcmp(id, "data", 4)) {
      data_at = pos + 8;
      data_len = len;
      break;
    }
    pos += 8 + len + (len & 1);
  }
  if (!data_at || !w.channels) throw Error(path + " has no fmt or data chunk: the file is truncated or not audio");
  if (w.rate <= 0) throw Error(path + " says its rate is 0 Hz: the header is broken; re-encode the file");
  const int width = bits / 8;
  const bool pcm = fmt == 1 && (bits == 16 || bits == 24 || bits == 32), flt = fmt == 3 && bits == 32;
  if (!pcm && !flt) throw Error(path + ": WAV format " + std::to_string(fmt) + " with " + std::to_string(bits) +
                                " bits is not read here: use PCM 16/24/32-bit or float32");
  if (data_at + data_len > b.size())
    throw Error(path + " is truncated: its data chunk says " + std::to_string(data_len) + " bytes, the file holds " +
                std::to_string(b.size() - data_at));
  if (channel < 0 || channel >= w.channels)
    throw Error(path + " has " + std::to_string(w.channels) + " channel(s), channel " + std::to_string(channel) +
                " does not exist: pick one with --channel");
  const size_t frame = static_cast<size_t>(width) * w.channels, n = data_len / frame;
  w.samples.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const char* p = b.data() + data_at + i * frame + channel * width;
    if (flt) w.samples[i] = le<float>(p);
    else if (bits == 16) w.samples[i] = le<int16_t>(p) / 32768.0f;
    else if (bits == 32) w.samples[i] = static_cast<float>(le<int32_t>(p) / 2147483648.0);
    else w.samples[i] = static_cast<float>((le<int32_t>(p - 1) >> 8) / 8388608.0);  // 24-bit: top three bytes
  }
  return w;
}

inline void write_wav(const std::string& path, const std::vector<float>& x, int rate, bool pcm16 = false) {
  const uint16_t fmt = pcm16 ? 1 : 3, bits = pcm16 ? 16 : 32;
  const uint32_t data_len = static_cast<uint32_t>(x.size() * bits / 8);
  std::string out(44 + data_len, '\0');
  char* p = out.data();
  auto put = [&](size_t at, auto v) { std::memcpy(p + at, &v, sizeof(v)); };
  std::memcpy(p, "RIFF", 4), put(4, uint32_t(36 + data_len)), std::memcpy(p + 8, "WAVEfmt ", 8);
  put(16, uint32_t(16)), put(20, fmt), put(22, uint16_t(1)), put(24, uint32_t(rate));
  put(28, uint32_t(rate * bits / 8)), put(32, uint16_t(bits / 8)), put(34, bits);
  std::memcpy(p + 36, "data", 4), put(40, data_len);
  for (size_t i = 0; i < x.size(); ++i) {
    if (pcm16) {
      float v = std::fmax(-1.0f, std::fmin(1.0f, x[i]));
      put(44 + 2 * i, int16_t(std::lrint(v * 32767.0f)));
    } else {
      put(44 + 4 * i, x[i]);
    }
  }
  write_file_atomic(path, out.data(), out.size());
}

// ---- NPY (version 1.0, '<f4', C order): what numpy.save writes for a float32 array ----
struct Npy {
  Shape shape;
  std::vector<float> data;
};

inline Npy read_npy(const std::string& path) {
  auto b = read_file(path);
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6)) throw Error(path + " is not a .npy file");
  const int major = static_cast<unsigned char>(b[6]);
  const size_t hlen = major == 1 ? le<uint16_t>(b.data() + 8) : le<uint32_t>(b.data() + 8);
  const size_t start = major == 1 ? 10 : 12;
  if (start + hlen > b.size()) throw Error(path + " is truncated");
  const std::string header(b.data() + start, hlen);
  if (header.find("'descr': '<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    throw Error(path + ": only float32 C-order arrays are read (header " + header + ")");
  Npy a;
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string d;
  while (std::getline(dims, d, ','))
    if (d.find_first_not_of(' ') != std::string::npos) a.shape.push_back(std::stoi(d));
  const size_t n = numel(a.shape), at = start + hlen;
  if (at + 4 * n > b.size()) throw Error(path + " is truncated");
  a.data.resize(n);
  std::memcpy(a.data.data(), b.data() + at, 4 * n);
  return a;
}

inline void write_npy(const std::string& path, const Shape& shape, const float* data) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';                                        // the header ends on a 64-byte boundary
  std::string out("\x93NUMPY\x01\x00", 8);
  const uint16_t hlen = static_cast<uint16_t>(header.size());
  out.append(reinterpret_cast<const char*>(&hlen), 2);
  out += header;
  out.append(reinterpret_cast<const char*>(data), 4 * numel(shape));
  write_file_atomic(path, out.data(), out.size());
}

}  // namespace pocketvqe
