// Result<T> and Status: how errors cross component boundaries (no exceptions across them).
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace kvm_amf {

// An error the environment or the caller caused: a message a person can act on.
struct Error {
  std::string message;
};

// Either a value of T or an error E (an Error unless a part needs more, e.g. a kind to choose an
// exit code by). REQUIRES: value() only when ok(), error() only when !ok().
template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(E error) : state_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return ok(); }

  const T& value() const& {
    assert(ok());
    return std::get<T>(state_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(state_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(state_));
  }
  const E& error() const {
    assert(!ok());
    return std::get<E>(state_);
  }

 private:
  std::variant<T, E> state_;
};

// Success, or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  static Status success() { return Status(); }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace kvm_amf
