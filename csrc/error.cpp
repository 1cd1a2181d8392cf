// The thread-local message behind `chargpt_last_error` (see shim.h).
#include "shim.h"

namespace {
thread_local std::string last_error;
}

namespace chargpt {
void set_last_error(const char* message) { last_error = message; }
}  // namespace chargpt

extern "C" {
// The message of the last failed shim call on this thread; valid until the next failure.
const char* chargpt_last_error() { return last_error.c_str(); }
}
