// The real GuestChannel: the host side of the guest agent's virtio-serial port
// (docs/guest-protocol.md). QEMU binds the port's host end as a UNIX stream socket,
// `socketDir/VM.agent` (DomainOptions::agentSocketDir); the channel connects to it, speaks the
// line protocol on the owner's event loop (non-blocking, no thread), counts heartbeats and
// reports a hang when none came for the watched timeout.
//
// Per VM:
// - The channel connects while the VM is watched or has requests outstanding, retrying every
//   `connectRetry` while the socket is missing or refuses (the VM is still starting) and after
//   EOF (QEMU went away, or another client took the port).
// - Hang: after watch(), the first heartbeat may take `firstHeartbeatTimeout` (the guest boots);
//   after that, a gap of `heartbeat.timeout` without one is a hang. onGuestHung is called once
//   per hang; a later heartbeat ends it (and a new hang is reported again).
// - Health: onGuestUnhealthy is called on the first `HB fail` after watch() or after an `HB ok`.
// - Requests (ASSIGN, REMOVE): queued until the agent's HELLO or first heartbeat on the current
//   connection (its HELLO may have gone to an earlier one), then written; failed when no ACK came `ackTimeout` after
//   they were first written, on `ACK fail`, or by unwatch(). Requests written but not acknowledged are written again
//   after every later HELLO (the connection was lost, or the agent reopened its port and may not have read them; the
//   hook is idempotent by contract). `done` is never called inside the call that made the request. A VM that is neither
//   watched nor has requests outstanding is not connected.
// - Bad lines (unknown, malformed, oversized, ACK for nothing outstanding) are counted, logged
//   to the logger and dropped; the connection stays.
// - CKPT-READ/CKPT-WRITE are handed to the GuestCheckpoints set with setCheckpoints() and answered
//   `CKPT <id> ok [data]` or `CKPT <id> fail <reason>` on the connection they came on (an answer
//   for a connection that has since closed is dropped: the agent failed the request when its port
//   closed). Without a GuestCheckpoints they are answered `ERR <id> unsupported`.
//
// The listener, the observer and every `done` may call the channel back, unwatch any VM or destroy
// the channel.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/time.h"
#include "kvm_amf/vmm/guest_channel.h"
#include "kvm_amf/vmm/guest_checkpoints.h"

namespace kvm_amf::vmm {

struct SocketGuestChannelOptions {
  std::string socketDir;  // absolute; the VM's socket is socketDir + "/" + vm + ".agent"
  Duration connectRetry = Duration(200);
  Duration firstHeartbeatTimeout = Duration(120'000);
  Duration ackTimeout = Duration(30'000);  // more than the agent's hook timeout (10 s by default)
  // Receives one line per notable event (connected, lost, HELLO, bad line with its reason).
  // Must not call into the channel.
  std::function<void(const std::string& vm, const std::string& line)> logger;
};

// What the channel has seen of one VM's agent since watch() (or since its first request);
// watching it again keeps them.
struct GuestStats {
  bool connected = false;            // the socket is connected now
  std::optional<std::string> agent;  // the agent version of the last HELLO on this connection
  std::uint64_t connects = 0;        // successful connects
  std::uint64_t hellos = 0;
  std::uint64_t heartbeats = 0;        // HB lines received (ok or fail)
  std::uint64_t lastSeq = 0;           // of the last HB; 0: none yet
  std::uint64_t missedHeartbeats = 0;  // forward seq gaps, summed
  std::uint64_t agentRestarts = 0;     // backward seq jumps
  std::uint64_t hangs = 0;             // onGuestHung calls
  std::uint64_t badLines = 0;          // unknown or malformed
  std::uint64_t oversizedLines = 0;
  std::uint64_t unexpectedAcks = 0;        // ACK for no outstanding request (late, duplicate, garbage)
  std::uint64_t acks = 0;                  // ACKs matched to a request
  std::uint64_t checkpointRequests = 0;    // CKPT-READ and CKPT-WRITE received
  std::uint64_t checkpointAnswers = 0;     // CKPT answers written (ok or fail)
  std::optional<TimePoint> lastHeartbeat;  // loop time
};

// Optional telemetry, beside the GuestListener (metrics, tools). Called on the loop thread.
class GuestObserver {
 public:
  virtual ~GuestObserver() = default;
  virtual void onHeartbeat(const std::string& vm, std::uint64_t seq, bool healthy) = 0;
  virtual void onHello(const std::string& vm, const std::string& agentVersion) = 0;
};

class SocketGuestChannel : public GuestChannel {
 public:
  // REQUIRES: `loop` outlives the channel; all calls on the loop thread.
  SocketGuestChannel(EventLoop& loop, SocketGuestChannelOptions options);
  // Closes every socket; outstanding requests' `done` are not called.
  ~SocketGuestChannel() override;
  SocketGuestChannel(const SocketGuestChannel&) = delete;
  SocketGuestChannel& operator=(const SocketGuestChannel&) = delete;

  void setListener(GuestListener* listener) override;
  void setObserver(GuestObserver* observer);
  // Serves the guests' checkpoint requests from now on (nullptr: `ERR unsupported`). REQUIRES:
  // `checkpoints` outlives the channel, or is unset first.
  void setCheckpoints(GuestCheckpoints* checkpoints);
  // Watching a watched VM again restarts its watch (first-heartbeat grace included); a changed
  // interval is told to a connected agent in a new WELCOME.
  void watch(const std::string& vm, const model::HeartbeatSpec& heartbeat) override;
  // Stops watching, fails its outstanding requests ("VM stopped", from the loop after unwatch()
  // returns), closes its socket, forgets it.
  void unwatch(const std::string& vm) override;
  void assign(const std::string& vm, const std::string& si, model::HaState ha,
              const std::map<std::string, std::string>& attributes, Done done) override;
  void unassign(const std::string& vm, const std::string& si, Done done) override;

  // Nothing if the channel knows nothing of `vm` (never watched nor asked, or unwatched).
  std::optional<GuestStats> stats(const std::string& vm) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvm_amf::vmm
