// pocketvqe/log.h: the runtime's log, quieter. ExecuTorch logs at Info level on every start
// (cpuinfo probing); this keeps errors and warnings on stderr and shows Info/Debug lines only with
// POCKETVQE_RUNTIME_LOG=1. It replaces the runtime's weak et_pal_emit_log_message, so include it in
// exactly one source file of a program.
#pragma once

#include <cstdio>
#include <cstdlib>

#include <executorch/runtime/platform/platform.h>

extern "C" void et_pal_emit_log_message(et_timestamp_t, et_pal_log_level_t level, const char* filename,
                                        const char*, size_t line, const char* message, size_t length) {
  static const bool verbose = std::getenv("POCKETVQE_RUNTIME_LOG") != nullptr;
  if (!verbose && (level == 'I' || level == 'D')) return;
  std::fprintf(stderr, "executorch %c %s:%zu] %.*s\n", static_cast<char>(level), filename, line,
               static_cast<int>(length), message);
}
