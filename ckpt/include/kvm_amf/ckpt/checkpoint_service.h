// The checkpoint service of one host (docs/checkpoints.md): a member of its own group
// (`kvm-amf-ckpt` in amfd) through a GroupChannel, holding a replica of the checkpoints.
//
// - Every change is an op multicast in the group's total order and applied by every member alike
//   (CheckpointStore). Ops delivered in a view without quorum are refused everywhere.
// - Each member logs the ops it applied (CheckpointDisk: one sync for the ops of a loop turn), then
//   multicasts one "applied up to N" message. A synchronous write is answered once every member of
//   the view in which it was applied, still in the view, has it on its disk; an asynchronous one
//   once its origin has applied it. A member that cannot persist leaves the group (and joins again
//   `rejoinAfter` later, taking the state from its peers).
// - State transfer to joiners in numbered rounds, like the node manager's: every member offers its
//   state's freshness (epoch, seq); the freshest sends its state in chunks; ops delivered
//   meanwhile are buffered and applied after it, those the snapshot already holds skipped.
// - Time-based removals (retention, section expiry) and the closing of opens held by processes that
//   left the group are ops too, sent by the lowest member of a quorate view.
//
// All calls and callbacks on the owner's event loop. A callback may call the service again, but
// must not destroy it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvm_amf/ckpt/checkpoint.h"
#include "kvm_amf/ckpt/checkpoint_disk.h"
#include "kvm_amf/ckpt/checkpoint_store.h"
#include "kvm_amf/ckpt/codec.h"
#include "kvm_amf/cluster/group.h"
#include "kvm_amf/common/scheduler.h"

namespace kvm_amf::ckpt {

enum class WriteMode {
  kSync,   // answered once every current member has the op on its disk
  kAsync,  // answered once the origin has applied it
};

struct CheckpointServiceOptions {
  // Tells this run of the service from earlier ones on the same node (opens and op identities are
  // per session); must grow from run to run. 0: the scheduler's time at construction (ms).
  std::uint64_t session = 0;
  StoreLimits limits;  // the same on every member
  // A write is refused up front unless the disk keeps this much free besides the write's data.
  std::uint64_t minFreeBytes = 64u << 20;
  // A new snapshot once the log has grown past this and past the last snapshot's size.
  std::uint64_t snapshotAfterLogBytes = 64u << 20;
  // After leaving the group because the disk failed: join again this long after.
  Duration rejoinAfter{10'000};
  std::size_t snapshotChunkBytes = 1u << 20;
  // The ops requested in one loop turn go out in one message, up to about this many bytes.
  std::size_t batchBytes = 256u << 10;
  // One line per notable event (joined, synchronised, disk failure, malformed message).
  std::function<void(const std::string& line)> logger;
};

struct CheckpointServiceDeps {
  Scheduler* scheduler = nullptr;
  cluster::GroupChannel* group = nullptr;
  CheckpointDisk* disk = nullptr;
};

// What the service has done since it started: for metrics and tests.
struct CheckpointServiceStats {
  std::uint64_t opsSent = 0;
  std::uint64_t opMessagesSent = 0;  // messages carrying them (an op batch is one)
  std::uint64_t opsApplied = 0;      // applied for real (not provisionally during a state transfer)
  std::uint64_t opsRefused = 0;      // applied and refused by the store's rules, or without quorum
  std::uint64_t appliedSent = 0;     // "applied up to N" messages
  std::uint64_t diskWrites = 0;      // appends and snapshots completed
  std::uint64_t diskFailures = 0;
  std::uint64_t opsDuringTransfer = 0;  // delivered while a state transfer ran here (buffered)
  std::uint64_t snapshotsSent = 0;      // as the freshest member of a state transfer
  std::uint64_t syncs = 0;              // state transfers completed
  std::uint64_t malformed = 0;          // messages that did not decode
};

class CheckpointService : public cluster::GroupListener {
 public:
  using WriteDone = std::function<void(CkptResult<std::uint64_t> seq)>;

  // `initial`: what this host's disk held (nullopt: nothing, a new host); `loaded` false when the
  // disk's contents were refused: the member then has no state until a peer gives it one.
  // REQUIRES: every dependency outlives the service.
  CheckpointService(CheckpointServiceDeps deps, CheckpointServiceOptions options,
                    std::optional<CheckpointStore> initial, bool loaded = true);
  ~CheckpointService() override;
  CheckpointService(const CheckpointService&) = delete;
  CheckpointService& operator=(const CheckpointService&) = delete;

  Status start();  // joins the group
  // Leaves the group; requests waiting for an answer fail with kUnavailable.
  void stop();

  // Sends an op with this host as its origin. Refused before sending (done called before this
  // returns): kInvalid/kLimit when the op breaks a rule that does not depend on the state,
  // kUnavailable while not synchronised with the group, kNoQuorum without quorum, kNoSpace when
  // this host's disk lacks room. Otherwise `done` gets the outcome: the op's seq, the store's
  // refusal, kNoQuorum (the view lost quorum before it was applied), kInterrupted (quorum was lost
  // before every member had it on disk, or the outcome could not be known across a state
  // transfer: it may or may not have been applied), kUnavailable (stop() came first) or kIo (this
  // host could not persist it and left the group).
  void submit(OpBody body, WriteMode mode, WriteDone done);

  // Convenience forms of submit().
  void create(const std::string& name, const CheckpointAttributes& attributes, WriteDone done);
  void unlink(const std::string& name, WriteDone done);
  void open(const std::string& name, const std::string& client, std::optional<CheckpointAttributes> create,
            WriteDone done);
  void close(const std::string& name, const std::string& client, WriteDone done);
  // Replaces the section's data, creating the section (and, with `createCheckpoint`, the
  // checkpoint) when missing.
  void put(const std::string& name, const std::string& section, std::string data, WriteMode mode, WriteDone done,
           std::optional<CheckpointAttributes> createCheckpoint = std::nullopt,
           std::optional<TimePoint> expiry = std::nullopt);

  // Reads this member's replica: kUnavailable while not synchronised, kNoQuorum without quorum
  // (a member cut off from the majority may miss writes), else the store's answer.
  CkptResult<std::string> read(const std::string& name, const std::string& section, std::uint64_t offset = 0,
                               std::uint64_t length = 0) const;
  CkptResult<CheckpointInfo> info(const std::string& name) const;
  CkptResult<std::vector<SectionInfo>> sections(const std::string& name) const;
  CkptResult<std::vector<CheckpointInfo>> list() const;

  // Whether this member serves: in the group and synchronised with it (during a state transfer, a
  // member that held the group's current state when it began still serves).
  bool synced() const { return inGroup_ && store_.has_value() && (!syncing_ || current_); }
  bool quorate() const { return view_.quorate; }
  const std::set<int>& members() const { return view_.members; }
  int nodeId() const { return self_; }
  TimePoint now() const { return deps_.scheduler->now(); }  // the clock ops are stamped with
  std::uint64_t session() const { return session_; }
  // The replica (nullptr when there is none), for tests and status.
  const CheckpointStore* store() const { return store_ ? &*store_ : nullptr; }
  std::uint64_t durableSeq() const { return durableSeq_; }  // on this host's disk
  const CheckpointServiceStats& stats() const { return stats_; }

  void onView(const cluster::ViewChange& view) override;
  void onDeliver(int sender, const std::string& payload) override;

 private:
  struct Pending {
    WriteMode mode = WriteMode::kSync;
    WriteDone done;
    // Set once applied: the seq to wait for and the members to wait for.
    std::optional<std::uint64_t> seq;
    std::set<int> waitFor;
    // Applied during a state transfer on this member's own (provisional) state.
    std::optional<CkptResult<std::uint64_t>> provisional;
  };
  struct Buffered {
    Op op;
    bool quorate = false;
  };
  struct View {
    std::set<int> members;
    bool quorate = false;
  };

  CkptResult<std::uint64_t> refuseNow(ErrorKind kind, std::string message) const;
  std::optional<CheckpointError> unavailable() const;
  void send(const Message& message);
  void log(const std::string& line) const;

  // State transfer.
  // `serving`: this member held the group's current state when the round began.
  void startSync(bool serving, std::optional<std::uint64_t> join = std::nullopt);
  void onOffer(const OfferMessage& offer);
  void onChunk(const SnapshotChunk& chunk);
  void finishSync(std::optional<CheckpointStore> adopted);
  // Makes this run's session above every earlier one of this node the store knows of.
  void followOwnSessions();

  // Ops.
  enum class ApplyMode {
    kLive,         // in the stream: logged, and an own op is answered
    kProvisional,  // while syncing, on this member's own state: an own op's outcome is kept
    kReplay,       // after adopting a snapshot: answered, not logged (the snapshot written next holds it)
  };
  // `payload`: the op's message as delivered (the log record is made from it).
  void onOp(const Op& op, const std::string* payload);
  void queue(Op op);  // to be sent at the end of this loop turn, with the others of the turn
  // Runs `work` once at the end of this loop turn; `scheduled` says it is due.
  void atEndOfTurn(bool& scheduled, void (CheckpointService::*work)());
  void sendOutgoing();
  void onApplied(const AppliedMessage& applied);
  void applyOp(const Op& op, bool quorate, ApplyMode mode, const std::string* payload = nullptr);
  void sendOwn(OpBody body);  // an op of the service itself (housekeeping), answered to nobody
  void settle(Pending& pending, std::uint64_t counter, const CkptResult<std::uint64_t>& outcome);
  void answer(std::uint64_t counter, CkptResult<std::uint64_t> outcome);
  void checkAcks();
  void failAll(ErrorKind kind, const std::string& message, bool onlyApplied = false);

  // Persistence.
  void scheduleFlush();
  void flush();
  void writeSnapshot();
  void onDurable(std::uint64_t upTo, const Status& status);
  void sendApplied();
  void leaveForDisk(const std::string& error);
  void leaveGroup();  // leaves and forgets the membership; pending requests stay for the caller

  // The lowest member of a quorate view: closes dead opens and removes what is due.
  bool isDecider() const;
  void housekeeping();

  CheckpointServiceDeps deps_;
  CheckpointServiceOptions options_;
  int self_ = 0;
  std::uint64_t session_ = 0;
  std::optional<CheckpointStore> store_;
  View view_;
  bool inGroup_ = false;  // a view including this member has been delivered since it joined
  bool started_ = false;  // between start() and stop()
  bool joined_ = false;   // asked to be in the group (not left for a disk failure)

  // State transfer.
  bool syncing_ = false;
  bool current_ = false;  // syncing, and held the group's current state when the transfer began
  std::uint64_t round_ = 0;
  std::uint64_t highestRound_ = 0;
  std::map<int, OfferMessage> offers_;
  int snapshotFrom_ = 0;
  std::string chunks_;  // the snapshot being received
  std::uint32_t nextChunk_ = 0;
  std::deque<Buffered> buffered_;  // ops delivered while syncing

  // Sessions of current members (from their offers, ops and acks): opens of other sessions are dead.
  std::map<int, std::uint64_t> sessions_;
  std::map<int, std::uint64_t> acked_;  // members' "applied up to"

  std::uint64_t counter_ = 0;  // ops sent in this session
  std::vector<Op> outgoing_;   // requested in this loop turn, not sent yet
  std::size_t outgoingBytes_ = 0;
  bool sendScheduled_ = false;
  std::map<std::uint64_t, Pending> pending_;  // by counter

  // Persistence.
  std::vector<std::string> unwritten_;  // records applied this turn, not yet given to the disk
  std::uint64_t unwrittenUpTo_ = 0;
  bool flushScheduled_ = false;
  std::uint64_t durableSeq_ = 0;  // every op up to here is on this host's disk
  // At most one "applied" message of this member is on its way at a time: under load, one message
  // then stands for every write that became durable meanwhile.
  bool appliedInFlight_ = false;
  std::uint64_t appliedSentUpTo_ = 0;
  std::uint64_t ackWantedUpTo_ = 0;  // the last seq of a sync op of another origin applied here
  std::uint64_t snapshotBytes_ = 0;  // the size of the last snapshot written
  bool snapshotNeeded_ = false;
  std::uint64_t diskGeneration_ = 0;  // bumped when the disk's work is abandoned (leaving the group)
  std::optional<TimerId> rejoinTimer_;

  // Housekeeping.
  std::optional<TimerId> expiryTimer_;
  std::optional<TimePoint> expiryAt_;
  bool expireInFlight_ = false;
  bool closeInFlight_ = false;

  CheckpointServiceStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kvm_amf::ckpt
