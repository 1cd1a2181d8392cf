// What every extern "C" entry point of the shim shares: no C++ exception may unwind into
// Rust (that is undefined behaviour), so each entry point runs its body inside
// `guarded`, which stores the exception's message for `chargpt_last_error` and returns a
// failure value instead. TORCH_CHECK inside a body throws c10::Error with libtorch's text.
#pragma once
#include <c10/util/Exception.h>
#include <exception>
#include <string>

namespace chargpt {

// The message of the last failed call on this thread.
void set_last_error(const char* message);

template <typename R, typename F>
R guarded(R on_failure, F&& body) {
  try {
    return body();
  } catch (const c10::Error& e) {
    set_last_error(e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_last_error(e.what());
  } catch (...) {
    set_last_error("unknown C++ exception");
  }
  return on_failure;
}

}  // namespace chargpt
