// SHA-256 (FIPS 180-4), written for this project; checked against Python's hashlib in tests/test_native.py.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ev {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  std::string hexdigest();  // finalises; call once

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& data);
// sha256 of a file, or of a directory (an .mlpackage) exactly as sdk.files.sha256_of: over the sorted
// "relative/path\0<file sha256>\n" lines. Throws ev::Error(EV_ERR_IO) when unreadable.
std::string sha256_of_path(const std::string& path);

}  // namespace ev
