#pragma once

#include <stdexcept>
#include <string>

#include "edgevideo.h"

namespace ev {

// Internal failures carry their C status code; the C API turns them into (status, message), never a crash.
class Error : public std::runtime_error {
 public:
  Error(ev_status code, const std::string& message) : std::runtime_error(message), code(code) {}
  ev_status code;
};

}  // namespace ev
