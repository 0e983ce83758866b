#include "npz.hpp"

#include <cstring>
#include <fstream>
#include <limits>

#include "error.hpp"

namespace ev {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error(EV_ERR_BAD_BUNDLE, "golden file " + path + ": " + what);
}

uint16_t u16(const std::string& b, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(b[at]) | (static_cast<uint8_t>(b[at + 1]) << 8));
}
uint32_t u32(const std::string& b, size_t at) { return u16(b, at) | (static_cast<uint32_t>(u16(b, at + 2)) << 16); }
uint64_t u64(const std::string& b, size_t at) { return u32(b, at) | (static_cast<uint64_t>(u32(b, at + 4)) << 32); }

NpyArray parse_npy(const std::string& path, const std::string& name, const std::string& b) {
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) bad(path, name + " is not a .npy array");
  int major = static_cast<uint8_t>(b[6]);
  size_t header_len, header_at;
  if (major == 1) {
    header_len = u16(b, 8);
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) bad(path, name + ": truncated header");
    header_len = u32(b, 8);
    header_at = 12;
  } else {
    bad(path, name + ": unknown .npy version " + std::to_string(major));
  }
  if (header_at + header_len > b.size()) bad(path, name + ": truncated header");
  std::string h = b.substr(header_at, header_len);
  auto field = [&](const std::string& key) -> std::string {
    size_t k = h.find("'" + key + "'");
    if (k == std::string::npos) bad(path, name + ": header lacks " + key);
    size_t colon = h.find(':', k);
    if (colon == std::string::npos) bad(path, name + ": bad header");
    size_t v = h.find_first_not_of(' ', colon + 1);
    if (v == std::string::npos) bad(path, name + ": bad header");
    size_t end = h[v] == '(' ? h.find(')', v) + 1 : h.find_first_of(",}", v);
    if (end == std::string::npos || end == 0) bad(path, name + ": bad header");
    return h.substr(v, end - v);
  };
  std::string descr = field("descr"), fortran = field("fortran_order"), shape_s = field("shape");
  if (fortran != "False") bad(path, name + ": Fortran-ordered arrays are not read");
  NpyArray a;
  std::string inner = shape_s.substr(1, shape_s.size() - 2);
  size_t i = 0;
  while (i < inner.size()) {
    while (i < inner.size() && (inner[i] == ' ' || inner[i] == ',')) ++i;
    if (i >= inner.size()) break;
    size_t j = i;
    while (j < inner.size() && inner[j] >= '0' && inner[j] <= '9') ++j;
    if (j == i || j - i > 12) bad(path, name + ": bad shape " + shape_s);
    a.shape.push_back(std::stoll(inner.substr(i, j - i)));
    i = j;
  }
  int64_t n = 1;
  for (int64_t d : a.shape) {
    if (d < 0 || (d > 0 && n > std::numeric_limits<int32_t>::max() / d)) bad(path, name + ": shape too large");
    n *= d;
  }
  size_t item = descr == "'<f4'" ? 4 : (descr == "'<f8'" || descr == "'<i8'") ? 8 : 0;
  if (!item) bad(path, name + ": dtype " + descr + " is not read (float32, float64, int64 only)");
  size_t data_at = header_at + header_len;
  if (b.size() - data_at < static_cast<size_t>(n) * item) bad(path, name + ": truncated data");
  a.data.resize(static_cast<size_t>(n));
  const char* p = b.data() + data_at;
  for (int64_t k = 0; k < n; ++k) {
    if (descr == "'<f4'") {
      std::memcpy(&a.data[k], p + 4 * k, 4);
    } else if (descr == "'<f8'") {
      double d;
      std::memcpy(&d, p + 8 * k, 8);
      a.data[k] = static_cast<float>(d);
    } else {
      int64_t q;
      std::memcpy(&q, p + 8 * k, 8);
      a.data[k] = static_cast<float>(q);
    }
  }
  return a;
}

}  // namespace

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(EV_ERR_IO, "golden file " + path + " cannot be read");
  std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // End of central directory: the last "PK\5\6" within the final 64 KiB + 22 bytes.
  if (b.size() < 22) bad(path, "not a zip file");
  size_t eocd = std::string::npos;
  for (size_t at = b.size() - 22;; --at) {
    if (b.compare(at, 4, "PK\x05\x06") == 0) {
      eocd = at;
      break;
    }
    if (at == 0 || b.size() - at > 65557) break;
  }
  if (eocd == std::string::npos) bad(path, "not a zip file (no end of central directory)");
  uint64_t entries = u16(b, eocd + 10), cd_at = u32(b, eocd + 16);
  if (cd_at == 0xFFFFFFFFu || entries == 0xFFFF) {  // zip64 end of central directory locator
    if (eocd < 20 || b.compare(eocd - 20, 4, "PK\x06\x07") != 0) bad(path, "zip64 locator missing");
    uint64_t z64 = u64(b, eocd - 20 + 8);
    if (z64 + 56 > b.size() || b.compare(z64, 4, "PK\x06\x06") != 0) bad(path, "bad zip64 directory");
    entries = u64(b, z64 + 32);
    cd_at = u64(b, z64 + 48);
  }
  std::map<std::string, NpyArray> out;
  size_t at = cd_at;
  for (uint64_t e = 0; e < entries; ++e) {
    if (at + 46 > b.size() || b.compare(at, 4, "PK\x01\x02") != 0) bad(path, "bad central directory");
    uint16_t method = u16(b, at + 10);
    uint64_t csize = u32(b, at + 20), usize = u32(b, at + 24), local = u32(b, at + 42);
    size_t name_len = u16(b, at + 28), extra_len = u16(b, at + 30), comment_len = u16(b, at + 32);
    if (at + 46 + name_len + extra_len + comment_len > b.size()) bad(path, "bad central directory entry");
    std::string name = b.substr(at + 46, name_len);
    size_t x = at + 46 + name_len, xend = x + extra_len;
    while (x + 4 <= xend) {  // zip64 extended information: only the fields that are 0xFFFFFFFF, in order
      uint16_t id = u16(b, x), len = u16(b, x + 2);
      if (x + 4 + len > xend) bad(path, "bad extra field");
      if (id == 0x0001) {
        size_t y = x + 4;
        if (usize == 0xFFFFFFFFu && y + 8 <= x + 4 + len) usize = u64(b, y), y += 8;
        if (csize == 0xFFFFFFFFu && y + 8 <= x + 4 + len) csize = u64(b, y), y += 8;
        if (local == 0xFFFFFFFFu && y + 8 <= x + 4 + len) local = u64(b, y), y += 8;
      }
      x += 4 + len;
    }
    at = xend + comment_len;
    if (method != 0) bad(path, name + " is compressed (savez_compressed); the native reader needs np.savez");
    if (local + 30 > b.size() || b.compare(local, 4, "PK\x03\x04") != 0) bad(path, "bad local header for " + name);
    size_t data = local + 30 + u16(b, local + 26) + u16(b, local + 28);
    if (data > b.size() || b.size() - data < csize || csize != usize) bad(path, name + " is truncated");
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
    out[name] = parse_npy(path, name, b.substr(data, csize));
  }
  return out;
}

}  // namespace ev
