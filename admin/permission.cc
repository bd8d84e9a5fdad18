#include "permission.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

namespace kvm_amf::admin::detail {

namespace {

template <typename T>
std::optional<T> number(const std::string& text) {
  T value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// Calls lookup(buffer) with a growing buffer while it reports ERANGE; returns its last result.
template <typename Lookup>
int withBuffer(std::vector<char>& buffer, Lookup&& lookup) {
  buffer.resize(1024);
  int error;
  while ((error = lookup(buffer)) == ERANGE && buffer.size() < (1u << 20)) buffer.resize(buffer.size() * 2);
  return error;
}

}  // namespace

void readIpcCredentials(const std::string& peerAddress, Peer& peer) {
  // The last three fields: the host part before them could in principle hold a ':'.
  std::size_t third = peerAddress.rfind(':');
  if (third == std::string::npos || third == 0) return;
  std::size_t second = peerAddress.rfind(':', third - 1);
  if (second == std::string::npos || second == 0) return;
  std::size_t first = peerAddress.rfind(':', second - 1);
  if (first == std::string::npos) return;
  auto uid = number<uid_t>(peerAddress.substr(first + 1, second - first - 1));
  auto gid = number<gid_t>(peerAddress.substr(second + 1, third - second - 1));
  auto pid = number<pid_t>(peerAddress.substr(third + 1));
  if (!uid || !gid || !pid) return;
  peer.uid = uid;
  peer.gid = gid;
  peer.pid = pid;
}

Result<Permission> Permission::create(const std::string& group) {
  if (group.empty()) return Permission("", std::nullopt, geteuid());
  std::vector<char> buffer;
  struct group entry {};
  struct group* found = nullptr;
  int error = withBuffer(
      buffer, [&](std::vector<char>& b) { return getgrnam_r(group.c_str(), &entry, b.data(), b.size(), &found); });
  if (error != 0) return Error{"cannot look up group " + group + ": " + std::strerror(error)};
  if (found == nullptr) return Error{"no such group: " + group};
  return Permission(group, entry.gr_gid, geteuid());
}

bool Permission::userInGroup(uid_t uid) const {
  std::vector<char> buffer;
  passwd entry{};
  passwd* found = nullptr;
  int error =
      withBuffer(buffer, [&](std::vector<char>& b) { return getpwuid_r(uid, &entry, b.data(), b.size(), &found); });
  if (error != 0 || found == nullptr) return false;
  std::vector<gid_t> groups(64);
  int count = static_cast<int>(groups.size());
  if (getgrouplist(entry.pw_name, entry.pw_gid, groups.data(), &count) < 0) {
    groups.resize(static_cast<std::size_t>(count));
    if (getgrouplist(entry.pw_name, entry.pw_gid, groups.data(), &count) < 0) return false;
  }
  groups.resize(static_cast<std::size_t>(count));
  for (gid_t g : groups) {
    if (g == *gid_) return true;
  }
  return false;
}

std::optional<std::string> Permission::refusal(const Peer& peer) const {
  if (!peer.uid) return "permission denied: the sender's credentials are unknown";
  if (*peer.uid == 0 || *peer.uid == ownUid_) return std::nullopt;
  std::string uid = std::to_string(*peer.uid);
  if (!gid_) return "permission denied: uid " + uid + " is not root";
  if ((peer.gid && *peer.gid == *gid_) || userInGroup(*peer.uid)) return std::nullopt;
  return "permission denied: uid " + uid + " is not root or in group " + group_;
}

}  // namespace kvm_amf::admin::detail
