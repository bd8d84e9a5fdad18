#include "kvm_amf/common/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace kvm_amf {
namespace {

constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kMagicSize = 8;
constexpr std::size_t kHeaderSize = kMagicSize + 4 + 8 + 4;  // magic, version, length, crc

std::string errnoText(int error) { return std::strerror(error); }

void putLe(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t getLe(std::string_view in, std::size_t at, int bytes) {
  std::uint64_t value = 0;
  for (int i = 0; i < bytes; ++i)
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return value;
}

Status fail(const std::string& path, const std::string& what, int error) {
  return Error{path + ": " + what + ": " + errnoText(error)};
}

bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string directoryOf(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::uint32_t crc32c(std::string_view data) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (char ch : data) crc = table[(crc ^ static_cast<unsigned char>(ch)) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

Status writeDurableFile(const std::string& path, std::string_view magic, std::string_view payload) {
  if (magic.size() != kMagicSize) return Error{path + ": internal error: the magic must have 8 characters"};
  std::string header(magic);
  putLe(header, kVersion, 4);
  putLe(header, payload.size(), 8);
  putLe(header, crc32c(payload), 4);

  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(temporary, "cannot create", errno);
  if (!writeAll(fd, header) || !writeAll(fd, payload) || ::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    ::unlink(temporary.c_str());
    return fail(path, "cannot write (the previous file is kept)", error);
  }
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return fail(path, "cannot write (the previous file is kept)", error);
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return fail(path, "cannot replace", error);
  }
  const std::string directory = directoryOf(path);
  const int dirFd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirFd < 0) return fail(directory, "cannot open to sync", errno);
  const int synced = ::fsync(dirFd);
  const int error = errno;
  ::close(dirFd);
  if (synced != 0) return fail(directory, "cannot sync", error);
  return Status::success();
}

Result<std::optional<std::string>> readDurableFile(const std::string& path, std::string_view magic) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return Error{path + ": cannot open: " + errnoText(errno)};
  }
  std::string content;
  std::array<char, 65536> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return Error{path + ": cannot read: " + errnoText(error)};
    }
    if (n == 0) break;
    content.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  const std::string_view view(content);
  if (view.size() < kHeaderSize) {
    return Error{path + ": truncated: " + std::to_string(view.size()) + " bytes, shorter than the header"};
  }
  if (view.substr(0, kMagicSize) != magic) return Error{path + ": not a file of this kind (wrong magic)"};
  const std::uint64_t version = getLe(view, kMagicSize, 4);
  if (version != kVersion) return Error{path + ": unknown format version " + std::to_string(version)};
  const std::uint64_t length = getLe(view, kMagicSize + 4, 8);
  const std::uint64_t crc = getLe(view, kMagicSize + 12, 4);
  if (view.size() - kHeaderSize != length) {
    return Error{path + ": truncated or extended: the header says " + std::to_string(length) +
                 " bytes of content, the file has " + std::to_string(view.size() - kHeaderSize)};
  }
  const std::string_view payload = view.substr(kHeaderSize);
  if (crc32c(payload) != crc) return Error{path + ": corrupt: checksum mismatch"};
  return std::optional<std::string>(std::string(payload));
}

}  // namespace kvm_amf
