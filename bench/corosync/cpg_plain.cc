// cpg-plain: the baseline for the replication benchmark. A bare libcpg client: joins a group,
// waits for `--members` members, then the one with `--send N` multicasts N messages of `--size`
// bytes in agreed order as fast as Corosync's flow control lets it; every member counts the
// deliveries and prints one JSON line when it has `--expect` of them:
//   {"node":1,"count":N,"seconds":S,"per_second":R}
// seconds: from this member's first delivery to its last.
#include <corosync/cpg.h>
#include <poll.h>
#include <sys/uio.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

namespace {

struct Bench {
  int members = 0;
  long expect = 0;
  long count = 0;
  std::chrono::steady_clock::time_point first, last;
};

Bench bench;

void deliver(cpg_handle_t, const cpg_name*, uint32_t, uint32_t, void*, size_t) {
  const auto now = std::chrono::steady_clock::now();
  if (bench.count++ == 0) bench.first = now;
  bench.last = now;
}

void confchg(cpg_handle_t, const cpg_name*, const cpg_address*, size_t members, const cpg_address*, size_t,
             const cpg_address*, size_t) {
  bench.members = static_cast<int>(members);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"plain libcpg multicast benchmark"};
  std::string group = "kvm-amf-bench";
  int members = 3;
  long send = 0;
  std::size_t size = 1024;
  app.add_option("--group", group);
  app.add_option("--members", members);
  app.add_option("--send", send);
  app.add_option("--size", size);
  app.add_option("--expect", bench.expect)->required();
  CLI11_PARSE(app, argc, argv);

  cpg_callbacks_t callbacks{&deliver, &confchg};
  cpg_handle_t handle = 0;
  if (cpg_initialize(&handle, &callbacks) != CS_OK) {
    std::fprintf(stderr, "cpg-plain: cannot connect to Corosync\n");
    return 69;
  }
  cpg_name name{};
  name.length = static_cast<uint32_t>(group.size());
  std::memcpy(name.value, group.data(), group.size());
  while (cpg_join(handle, &name) == CS_ERR_TRY_AGAIN) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  unsigned int node = 0;
  cpg_local_get(handle, &node);
  int fd = -1;
  cpg_fd_get(handle, &fd);

  std::string payload(size, 'x');
  long sent = 0;
  for (;;) {
    if (bench.members >= members && sent < send) {
      iovec iov{payload.data(), payload.size()};
      const cs_error_t error = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1);
      if (error == CS_OK) {
        ++sent;
        continue;  // dispatch below only when Corosync pushes back or everything is sent
      }
      if (error != CS_ERR_TRY_AGAIN) {
        std::fprintf(stderr, "cpg-plain: cpg_mcast_joined failed: %d\n", error);
        return 1;
      }
    }
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, sent < send && bench.members >= members ? 1 : 100);
    if (cpg_dispatch(handle, CS_DISPATCH_ALL) != CS_OK) return 1;
    if (bench.count >= bench.expect) break;
  }
  const double seconds = std::chrono::duration<double>(bench.last - bench.first).count();
  std::printf("{\"node\":%u,\"count\":%ld,\"seconds\":%.6f,\"per_second\":%.1f}\n", node, bench.count, seconds,
              seconds > 0 ? static_cast<double>(bench.count - 1) / seconds : 0.0);
  std::fflush(stdout);
  // Stay a moment so the other members' last messages are not held up by a leave.
  for (int i = 0; i < 10; ++i) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 50);
    cpg_dispatch(handle, CS_DISPATCH_ALL);
  }
  cpg_finalize(handle);
  return 0;
}
