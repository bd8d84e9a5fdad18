// How a notification reaches its destination: an HTTP POST over a plain socket, or a command
// with the event on its standard input. Both block the calling thread (a worker of the
// Notifier) for at most `timeout`, measured on the monotonic clock by a timer descriptor.
#pragma once

#include <map>
#include <string>

#include "kvm_amf/common/result.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::monitor {

struct HttpUrl {
  std::string host;  // a name or an IPv4/IPv6 literal (without brackets)
  std::string port = "80";
  std::string path = "/";
};
// http://HOST[:PORT][/PATH]; an error naming what is wrong (https is not supported).
Result<HttpUrl> parseHttpUrl(const std::string& url);

// POSTs `body` as application/json; success on a 2xx status. The error names the URL and what
// failed (lookup, connect, timeout, the status line). The name lookup is not bounded by
// `timeout` (the resolver's own timeouts apply): use addresses where that matters.
Status httpPost(const HttpUrl& url, const std::string& body, Duration timeout);

// Runs `/bin/sh -c command` in a process group of its own, with `input` on its standard input
// and `environment` added to amfd's. Success when it exits 0 within `timeout`; past that the
// whole group is killed. The error says how it ended, with the last line it wrote.
Status runCommand(const std::string& command, const std::string& input,
                  const std::map<std::string, std::string>& environment, Duration timeout);

}  // namespace kvm_amf::monitor
