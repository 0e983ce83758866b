// A small strict JSON reader (RFC 8259): no NaN/Infinity, no trailing commas, no comments, no duplicate keys,
// depth-limited. Enough for manifest.json; nothing vendored.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ev {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  bool integral = false;   // the literal had no fraction and no exponent and fits in int64
  int64_t integer = 0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;  // in file order

  // Parses `text`; throws ev::Error(EV_ERR_BAD_BUNDLE-like code chosen by the caller) via JsonError.
  static Json parse(const std::string& text);

  bool is_object() const { return type == Type::Object; }
  bool is_array() const { return type == Type::Array; }
  bool is_string() const { return type == Type::String; }
  bool is_number() const { return type == Type::Number; }
  bool is_int() const { return type == Type::Number && integral; }
  bool is_bool() const { return type == Type::Bool; }
  bool is_null() const { return type == Type::Null; }
  const Json* find(const std::string& key) const;  // object member or nullptr
  static const char* type_name(Type t);
};

struct JsonError {
  std::string message;
};

}  // namespace ev
