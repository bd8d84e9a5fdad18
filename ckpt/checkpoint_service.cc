#include "kvm_amf/ckpt/checkpoint_service.h"

#include <algorithm>
#include <tuple>

#include "kvm_amf/common/overloaded.h"

namespace kvm_amf::ckpt {
namespace {

CheckpointError failure(ErrorKind kind, std::string message) { return CheckpointError{kind, std::move(message)}; }

const char* const kNoQuorum = "no quorum: checkpoint writes need a quorate cluster";
const char* const kNoQuorumRead =
    "no quorum: this host is cut off from the cluster's majority, whose checkpoints may have moved on";

// The freshest state to continue from: a state at all, then the highest epoch, then the most ops
// applied, then the lowest node id.
bool fresher(const OfferMessage& a, const OfferMessage& b) {
  return std::tuple(a.hasState, a.epoch, a.seq, -a.node) > std::tuple(b.hasState, b.epoch, b.seq, -b.node);
}

}  // namespace

CheckpointService::CheckpointService(CheckpointServiceDeps deps, CheckpointServiceOptions options,
                                     std::optional<CheckpointStore> initial, bool loaded)
    : deps_(deps), options_(std::move(options)) {
  self_ = deps_.group->localNodeId();
  session_ = options_.session != 0
                 ? options_.session
                 : static_cast<std::uint64_t>(std::max<Duration::rep>(1, deps_.scheduler->now().count()));
  if (initial) {
    store_ = std::move(initial);
    durableSeq_ = store_->seq();
  } else if (loaded) {
    store_.emplace(options_.limits);
  }
  if (store_) followOwnSessions();
}

void CheckpointService::followOwnSessions() {
  // Sessions must grow from run to run: ops of a session at or below this node's mark would be
  // taken for ops already applied. A clock set back between two runs would break that.
  // (Equal is this run's own, once it has sent ops.)
  auto mark = store_->state().origins.find(self_);
  if (mark == store_->state().origins.end() || mark->second.session < session_) return;
  if (mark->second.session == session_ && counter_ > 0) return;
  log("session " + std::to_string(session_) + " is not above this node's last one (" +
      std::to_string(mark->second.session) + "); using " + std::to_string(mark->second.session + 1));
  session_ = mark->second.session + 1;
  counter_ = 0;
  outgoing_.clear();
  outgoingBytes_ = 0;
  failAll(ErrorKind::kInterrupted, "interrupted: this host's checkpoint session was renumbered; write again");
}

CheckpointService::~CheckpointService() {
  *alive_ = false;
  if (expiryTimer_) deps_.scheduler->cancel(*expiryTimer_);
  if (rejoinTimer_) deps_.scheduler->cancel(*rejoinTimer_);
}

Status CheckpointService::start() {
  started_ = true;
  joined_ = true;
  return deps_.group->join(this);
}

void CheckpointService::stop() {
  if (!started_) return;
  started_ = false;
  if (rejoinTimer_) deps_.scheduler->cancel(*rejoinTimer_);
  rejoinTimer_.reset();
  leaveGroup();
  failAll(ErrorKind::kUnavailable, "the checkpoint service on node " + std::to_string(self_) + " stopped");
}

void CheckpointService::leaveGroup() {
  joined_ = false;
  deps_.group->leave();
  inGroup_ = false;
  syncing_ = false;
  current_ = false;
  buffered_.clear();
  view_ = View{};
  acked_.clear();
  sessions_.clear();
  ++diskGeneration_;  // nothing more is acknowledged from here
  unwritten_.clear();
  appliedInFlight_ = false;
  outgoing_.clear();
  outgoingBytes_ = 0;
  if (expiryTimer_) deps_.scheduler->cancel(*expiryTimer_);
  expiryTimer_.reset();
  expiryAt_.reset();
}

void CheckpointService::log(const std::string& line) const {
  if (options_.logger) options_.logger(line);
}

std::optional<CheckpointError> CheckpointService::unavailable() const {
  if (!inGroup_) {
    return failure(ErrorKind::kUnavailable,
                   "the checkpoint service on node " + std::to_string(self_) + " is not in its group");
  }
  if (!synced()) {
    return failure(ErrorKind::kUnavailable, "the checkpoint service on node " + std::to_string(self_) +
                                                " is not synchronised with its group yet");
  }
  return std::nullopt;
}

void CheckpointService::send(const Message& message) {
  Status status = deps_.group->multicast(encode(message));
  (void)status;  // not in the group: lost, as on a crash; the view change that follows tells the rest
}

// ---- Requests -----------------------------------------------------------------------------------

void CheckpointService::submit(OpBody body, WriteMode mode, WriteDone done) {
  if (auto e = unavailable()) return done(*e);
  if (!view_.quorate) return done(failure(ErrorKind::kNoQuorum, kNoQuorum));
  if (auto e = CheckpointStore::check(body, options_.limits)) return done(*e);
  const std::uint64_t data = opDataBytes(body);
  if (const std::optional<std::uint64_t> free = deps_.disk->freeBytes(); free && *free < data + options_.minFreeBytes) {
    return done(failure(ErrorKind::kNoSpace,
                        "disk full: " + std::to_string(*free) + " bytes free where node " + std::to_string(self_) +
                            " keeps its checkpoints; a write needs its data (" + std::to_string(data) + " bytes) and " +
                            std::to_string(options_.minFreeBytes) + " bytes to spare"));
  }
  Op op{self_, session_, ++counter_, deps_.scheduler->now(), std::move(body), mode == WriteMode::kSync};
  Pending& pending = pending_[op.counter];
  pending.mode = mode;
  pending.done = std::move(done);
  queue(std::move(op));
}

void CheckpointService::queue(Op op) {
  outgoingBytes_ += opDataBytes(op.body) + 64;
  outgoing_.push_back(std::move(op));
  if (outgoingBytes_ >= options_.batchBytes) return sendOutgoing();
  // The ops requested in this loop turn go out together, in one message.
  atEndOfTurn(sendScheduled_, &CheckpointService::sendOutgoing);
}

void CheckpointService::atEndOfTurn(bool& scheduled, void (CheckpointService::*work)()) {
  if (scheduled) return;
  scheduled = true;
  deps_.scheduler->after(Duration(0), [this, alive = alive_, &scheduled, work] {
    if (!*alive) return;
    scheduled = false;
    (this->*work)();
  });
}

void CheckpointService::sendOutgoing() {
  if (outgoing_.empty()) return;
  std::vector<Op> ops = std::move(outgoing_);
  outgoing_.clear();
  outgoingBytes_ = 0;
  stats_.opsSent += ops.size();
  ++stats_.opMessagesSent;
  Status sent = ops.size() == 1 ? deps_.group->multicast(encode(ops.front()))
                                : deps_.group->multicast(encode(OpBatch{std::move(ops)}));
  if (sent.ok()) return;
  // Not sent: applied nowhere.
  std::vector<std::uint64_t> counters;
  for (const auto& [counter, pending] : pending_) {
    if (!pending.seq && !pending.provisional) counters.push_back(counter);
  }
  for (std::uint64_t counter : counters) {
    answer(counter, failure(ErrorKind::kUnavailable, "cannot send to the checkpoint group: " + sent.error().message));
  }
}

void CheckpointService::create(const std::string& name, const CheckpointAttributes& attributes, WriteDone done) {
  submit(CreateCheckpoint{name, attributes}, WriteMode::kSync, std::move(done));
}

void CheckpointService::unlink(const std::string& name, WriteDone done) {
  submit(UnlinkCheckpoint{name}, WriteMode::kSync, std::move(done));
}

void CheckpointService::open(const std::string& name, const std::string& client,
                             std::optional<CheckpointAttributes> create, WriteDone done) {
  submit(OpenCheckpoint{name, client, create}, WriteMode::kSync, std::move(done));
}

void CheckpointService::close(const std::string& name, const std::string& client, WriteDone done) {
  submit(CloseCheckpoint{name, client}, WriteMode::kSync, std::move(done));
}

void CheckpointService::put(const std::string& name, const std::string& section, std::string data, WriteMode mode,
                            WriteDone done, std::optional<CheckpointAttributes> createCheckpoint,
                            std::optional<TimePoint> expiry) {
  submit(OverwriteSection{name, section, std::move(data), true, createCheckpoint, expiry}, mode, std::move(done));
}

CkptResult<std::string> CheckpointService::read(const std::string& name, const std::string& section,
                                                std::uint64_t offset, std::uint64_t length) const {
  if (auto e = unavailable()) return *e;
  if (!view_.quorate) return failure(ErrorKind::kNoQuorum, kNoQuorumRead);
  return store_->read(name, section, offset, length);
}

CkptResult<CheckpointInfo> CheckpointService::info(const std::string& name) const {
  if (auto e = unavailable()) return *e;
  if (!view_.quorate) return failure(ErrorKind::kNoQuorum, kNoQuorumRead);
  return store_->info(name);
}

CkptResult<std::vector<SectionInfo>> CheckpointService::sections(const std::string& name) const {
  if (auto e = unavailable()) return *e;
  if (!view_.quorate) return failure(ErrorKind::kNoQuorum, kNoQuorumRead);
  return store_->sections(name);
}

CkptResult<std::vector<CheckpointInfo>> CheckpointService::list() const {
  if (auto e = unavailable()) return *e;
  if (!view_.quorate) return failure(ErrorKind::kNoQuorum, kNoQuorumRead);
  return store_->list();
}

void CheckpointService::answer(std::uint64_t counter, CkptResult<std::uint64_t> outcome) {
  auto it = pending_.find(counter);
  if (it == pending_.end()) return;
  WriteDone done = std::move(it->second.done);
  pending_.erase(it);
  if (done) done(std::move(outcome));
}

void CheckpointService::failAll(ErrorKind kind, const std::string& message, bool onlyApplied) {
  std::vector<WriteDone> failed;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (onlyApplied && !it->second.seq && !it->second.provisional) {
      ++it;
      continue;
    }
    failed.push_back(std::move(it->second.done));
    it = pending_.erase(it);
  }
  for (auto& done : failed) {
    if (done) done(failure(kind, message));
  }
}

// ---- Membership and state transfer --------------------------------------------------------------

void CheckpointService::onView(const cluster::ViewChange& change) {
  if (!joined_) return;
  const bool wasServing = synced() && view_.quorate;
  const bool first = !inGroup_;
  inGroup_ = true;
  const bool wasQuorate = view_.quorate;
  for (int member : view_.members) {
    if (change.members.contains(member)) continue;
    acked_.erase(member);
    sessions_.erase(member);
    for (auto& [counter, pending] : pending_) pending.waitFor.erase(member);  // no longer waited for
  }
  view_.members = change.members;
  view_.quorate = change.quorate;
  // This member's "applied" message may have been lost with the old view; at worst two are now on
  // their way.
  appliedInFlight_ = false;
  expireInFlight_ = false;
  closeInFlight_ = false;
  if (!change.quorate && !outgoing_.empty()) {
    // Not sent yet: applied nowhere.
    std::vector<Op> unsent = std::move(outgoing_);
    outgoing_.clear();
    outgoingBytes_ = 0;
    for (const Op& op : unsent) answer(op.counter, failure(ErrorKind::kNoQuorum, kNoQuorum));
  }
  if (!change.quorate && (wasQuorate || first)) {
    // What was sent, or applied and not yet on every member's disk, may or may not be applied on
    // the side of the partition that kept quorum.
    failAll(ErrorKind::kInterrupted,
            "interrupted: quorum was lost before every member had the write on disk; it may or may not have been "
            "applied (read it back once the cluster is quorate)");
  }
  // A round runs when members join, or again when members leave during one (the freshest may be gone).
  if (first || !change.joined.empty() || syncing_) startSync(wasServing);
  checkAcks();
  housekeeping();
}

void CheckpointService::startSync(bool serving, std::optional<std::uint64_t> join) {
  round_ = join ? *join : highestRound_ + 1;
  highestRound_ = std::max(highestRound_, round_);
  // A member that held the group's current state when the transfer began goes on serving: the
  // freshest state is the one it holds (the lineage that had quorum), and it applies the same ops.
  if (!syncing_) current_ = serving;
  syncing_ = true;
  offers_.clear();
  snapshotFrom_ = 0;
  chunks_.clear();
  nextChunk_ = 0;
  send(OfferMessage{self_, session_, round_, store_.has_value(), store_ ? store_->epoch() : 0,
                    store_ ? store_->seq() : 0});
}

void CheckpointService::onOffer(const OfferMessage& offer) {
  if (!view_.members.contains(offer.node)) return;
  sessions_[offer.node] = offer.session;
  // Members need not see the same views while a host joins, so they may start rounds at different
  // places in the stream: every member joins the highest round it hears of and counts its offers.
  highestRound_ = std::max(highestRound_, offer.round);
  if (offer.round > round_) startSync(synced() && view_.quorate, offer.round);
  if (offer.round != round_ || !syncing_) return;
  offers_[offer.node] = offer;
  for (int member : view_.members) {
    if (!offers_.contains(member)) return;
  }
  const OfferMessage* best = nullptr;
  for (const auto& [node, candidate] : offers_) {
    if (!best || fresher(candidate, *best)) best = &candidate;
  }
  if (!best->hasState) {
    log("no member of the checkpoint group has a state to continue from; waiting for one that has");
    return;
  }
  snapshotFrom_ = best->node;
  if (snapshotFrom_ != self_) return;
  // The state as of now: the others buffer what is delivered after this point and skip, after
  // adopting it, the ops it already holds.
  const bool alone = view_.members.size() == 1;
  const std::string state = alone ? std::string() : encodeState(store_->state());
  const std::size_t chunk = std::max<std::size_t>(1, options_.snapshotChunkBytes);
  std::uint32_t index = 0;
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(chunk, state.size() - at);
    send(SnapshotChunk{self_, round_, index++, at + n >= state.size(), state.substr(at, n)});
    at += n;
  } while (at < state.size());
  ++stats_.snapshotsSent;
}

void CheckpointService::onChunk(const SnapshotChunk& chunk) {
  if (!syncing_ || chunk.round != round_ || chunk.node != snapshotFrom_ || snapshotFrom_ == 0) return;
  if (chunk.index != nextChunk_) {
    log("state transfer: chunk " + std::to_string(chunk.index) + " from node " + std::to_string(chunk.node) +
        " where " + std::to_string(nextChunk_) + " was due; waiting for another round");
    snapshotFrom_ = 0;
    return;
  }
  ++nextChunk_;
  if (snapshotFrom_ == self_) {
    if (chunk.last) finishSync(std::nullopt);
    return;
  }
  chunks_ += chunk.bytes;
  if (!chunk.last) return;
  Result<StoreState> state = decodeState(chunks_);
  chunks_.clear();
  if (!state.ok()) {
    ++stats_.malformed;
    log("state transfer: the snapshot from node " + std::to_string(chunk.node) +
        " does not decode: " + state.error().message);
    snapshotFrom_ = 0;
    return;
  }
  finishSync(CheckpointStore(options_.limits, std::move(state).value()));
}

void CheckpointService::finishSync(std::optional<CheckpointStore> adopted) {
  const bool winner = !adopted.has_value();
  if (winner) {
    // This member's state is the group's: the outcomes it found for its own ops hold.
    std::vector<std::pair<std::uint64_t, CkptResult<std::uint64_t>>> found;
    for (const auto& [counter, pending] : pending_) {
      if (pending.provisional) found.emplace_back(counter, *pending.provisional);
    }
    for (const auto& [counter, outcome] : found) {
      auto it = pending_.find(counter);
      if (it != pending_.end()) settle(it->second, counter, outcome);
    }
  } else {
    // Outcomes found on this member's own state hold if that state was the group's current one:
    // it served in a quorate view, and the freshest state is of the same epoch (the same lineage,
    // which only a quorate view moves on).
    const auto from = offers_.find(snapshotFrom_);
    const bool sameState = current_ && store_ && from != offers_.end() && from->second.epoch == store_->epoch();
    const std::uint64_t snapshotSeq = adopted->seq();
    store_ = std::move(adopted);
    std::deque<Buffered> replay = std::move(buffered_);
    buffered_.clear();
    for (const Buffered& b : replay) {
      const bool own = b.op.node == self_ && b.op.session == session_;
      if (b.quorate && store_->includes(b.op)) {
        if (!own) continue;
        auto it = pending_.find(b.op.counter);
        if (it == pending_.end()) continue;
        if (sameState && it->second.provisional) {
          CkptResult<std::uint64_t> outcome = *it->second.provisional;
          if (outcome.ok()) outcome = snapshotSeq;  // held by the snapshot: on every disk once it is
          settle(it->second, b.op.counter, outcome);
        } else {
          answer(b.op.counter, failure(ErrorKind::kInterrupted,
                                       "interrupted: a state transfer came first; the write may or may not have "
                                       "been applied (read it back)"));
        }
        continue;
      }
      applyOp(b.op, b.quorate, ApplyMode::kReplay);
    }
  }
  buffered_.clear();
  followOwnSessions();
  if (view_.quorate) store_->setEpoch(store_->epoch() + 1);
  syncing_ = false;
  current_ = false;
  ++stats_.syncs;
  // A new start on disk: the snapshot replaces what was written, and only "applied" messages of
  // the new epoch count.
  acked_.clear();
  ++diskGeneration_;
  unwritten_.clear();
  durableSeq_ = 0;
  appliedSentUpTo_ = 0;
  ackWantedUpTo_ = store_->seq();  // the snapshot may hold writes others wait for
  writeSnapshot();
  log("checkpoints synchronised with the group (epoch " + std::to_string(store_->epoch()) + ", seq " +
      std::to_string(store_->seq()) + ", " + std::to_string(store_->state().checkpoints.size()) + " checkpoints" +
      (winner ? ", this member's state" : ", from node " + std::to_string(snapshotFrom_)) + ")");
  checkAcks();
  housekeeping();
}

// ---- The stream ---------------------------------------------------------------------------------

void CheckpointService::onDeliver(int, const std::string& payload) {
  if (!joined_ || !inGroup_) return;
  Result<Message> message = decode(payload);
  if (!message.ok()) {
    ++stats_.malformed;
    log("dropped a malformed message: " + message.error().message);
    return;
  }
  std::visit(Overloaded{
                 [&](const Op& op) { onOp(op, &payload); },
                 [&](const OpBatch& batch) {
                   for (const Op& op : batch.ops) onOp(op, nullptr);
                 },
                 [&](const AppliedMessage& m) { onApplied(m); },
                 [&](const OfferMessage& m) { onOffer(m); },
                 [&](const SnapshotChunk& m) { onChunk(m); },
             },
             message.value());
}

void CheckpointService::onOp(const Op& op, const std::string* payload) {
  if (view_.members.contains(op.node)) sessions_[op.node] = op.session;
  if (syncing_) {
    ++stats_.opsDuringTransfer;
    buffered_.push_back({op, view_.quorate});
    if (store_) applyOp(op, view_.quorate, ApplyMode::kProvisional);
    return;
  }
  if (!store_) return;
  applyOp(op, view_.quorate, ApplyMode::kLive, payload);
  housekeeping();
}

void CheckpointService::applyOp(const Op& op, bool quorate, ApplyMode mode, const std::string* payload) {
  const bool own = op.node == self_ && op.session == session_;
  if (own && std::holds_alternative<Expire>(op.body)) expireInFlight_ = false;
  if (own && std::holds_alternative<CloseOpeners>(op.body)) closeInFlight_ = false;
  CkptResult<std::uint64_t> outcome = failure(ErrorKind::kNoQuorum, kNoQuorum);
  if (!quorate) {
    // Refused everywhere in this view. The origin cannot tell whether the side of a partition that
    // kept quorum delivered it before the view changed.
    outcome = failure(ErrorKind::kInterrupted,
                      "interrupted: quorum was lost before the write was applied; it may or may not have been "
                      "applied (read it back once the cluster is quorate)");
    ++stats_.opsRefused;
  } else {
    if (store_->includes(op)) return;  // held already (a repeated delivery cannot happen otherwise)
    outcome = store_->apply(op);
    if (mode != ApplyMode::kProvisional) {
      ++stats_.opsApplied;
      if (!outcome.ok()) ++stats_.opsRefused;
    }
    if (mode == ApplyMode::kLive) {
      unwritten_.push_back(payload ? recordFromMessage(store_->seq(), *payload)
                                   : encodeRecord(LogRecord{store_->seq(), op}));
      unwrittenUpTo_ = store_->seq();
      scheduleFlush();
    }
    // Another origin waits for this member's "applied" up to here.
    if (op.sync && !own && mode != ApplyMode::kProvisional) ackWantedUpTo_ = store_->seq();
  }
  if (!own) return;
  auto it = pending_.find(op.counter);
  if (it == pending_.end()) return;
  if (mode == ApplyMode::kProvisional) {
    // A member that holds the current state knows the outcome now; a sync write still waits for
    // the state transfer to end (for the members' disks).
    if (current_ && (!outcome.ok() || it->second.mode == WriteMode::kAsync)) return answer(op.counter, outcome);
    it->second.provisional = std::move(outcome);
  } else {
    settle(it->second, op.counter, outcome);
  }
}

void CheckpointService::settle(Pending& pending, std::uint64_t counter, const CkptResult<std::uint64_t>& outcome) {
  if (!outcome.ok() || pending.mode == WriteMode::kAsync) return answer(counter, outcome);
  pending.provisional.reset();
  pending.seq = outcome.value();
  pending.waitFor = view_.members;
  checkAcks();
}

void CheckpointService::onApplied(const AppliedMessage& applied) {
  if (applied.node == self_ && applied.session == session_) {
    appliedInFlight_ = false;
    sendApplied();
  }
  if (!view_.members.contains(applied.node)) return;
  sessions_[applied.node] = applied.session;
  if (!store_ || applied.epoch != store_->epoch()) return;  // of a state this one replaced
  std::uint64_t& acked = acked_[applied.node];
  acked = std::max(acked, applied.upTo);
  checkAcks();
}

void CheckpointService::checkAcks() {
  if (!view_.quorate || !inGroup_) return;
  // Own ops are applied in the order sent, so their seqs grow with their counters, and a later
  // op's members to wait for include an earlier one's (leavers are dropped from all): once one is
  // not done, none after it is.
  std::vector<std::uint64_t> done;
  for (const auto& [counter, pending] : pending_) {
    if (!pending.seq) break;
    bool all = true;
    for (int member : pending.waitFor) {
      if (!view_.members.contains(member)) continue;
      const std::uint64_t acked = member == self_ ? durableSeq_ : (acked_.contains(member) ? acked_.at(member) : 0);
      if (acked < *pending.seq) {
        all = false;
        break;
      }
    }
    if (!all) break;
    done.push_back(counter);
  }
  for (std::uint64_t counter : done) {
    auto it = pending_.find(counter);
    if (it == pending_.end()) continue;
    const std::uint64_t seq = *it->second.seq;
    answer(counter, seq);
  }
}

// ---- Persistence --------------------------------------------------------------------------------

void CheckpointService::scheduleFlush() {
  // Every op applied in this loop turn goes to the disk in one write.
  atEndOfTurn(flushScheduled_, &CheckpointService::flush);
}

void CheckpointService::flush() {
  if (unwritten_.empty() || !inGroup_) return;
  std::vector<std::string> records = std::move(unwritten_);
  unwritten_.clear();
  const std::uint64_t upTo = unwrittenUpTo_;
  deps_.disk->append(std::move(records), [this, alive = alive_, upTo, generation = diskGeneration_](Status status) {
    if (!*alive || generation != diskGeneration_) return;
    onDurable(upTo, status);
  });
  if (deps_.disk->logBytes() > std::max(options_.snapshotAfterLogBytes, snapshotBytes_)) writeSnapshot();
}

void CheckpointService::writeSnapshot() {
  std::string state = encodeState(store_->state());
  snapshotBytes_ = state.size();
  const std::uint64_t seq = store_->seq();
  deps_.disk->snapshot(std::move(state), store_->epoch(), seq,
                       [this, alive = alive_, seq, generation = diskGeneration_](Status status) {
                         if (!*alive || generation != diskGeneration_) return;
                         onDurable(seq, status);
                       });
}

void CheckpointService::onDurable(std::uint64_t upTo, const Status& status) {
  ++stats_.diskWrites;
  if (!status.ok()) {
    ++stats_.diskFailures;
    return leaveForDisk(status.error().message);
  }
  if (upTo <= durableSeq_) return;
  durableSeq_ = upTo;
  sendApplied();
  checkAcks();
}

void CheckpointService::sendApplied() {
  // Only when another origin waits for what became durable since the last one, one at a time.
  if (appliedInFlight_ || ackWantedUpTo_ <= appliedSentUpTo_ || durableSeq_ <= appliedSentUpTo_) return;
  if (!inGroup_ || !store_) return;
  appliedInFlight_ = true;
  appliedSentUpTo_ = durableSeq_;
  send(AppliedMessage{self_, session_, store_->epoch(), durableSeq_});
  ++stats_.appliedSent;
}

void CheckpointService::leaveForDisk(const std::string& error) {
  if (!inGroup_) return;
  log("cannot keep the checkpoints on this host's disk: " + error +
      "; leaving the checkpoint group (joining again in " + std::to_string(options_.rejoinAfter.count()) + " ms)");
  leaveGroup();
  failAll(ErrorKind::kIo, "node " + std::to_string(self_) + " could not keep the write on its disk (" + error +
                              ") and left the checkpoint group; the write may or may not have been applied");
  if (rejoinTimer_) deps_.scheduler->cancel(*rejoinTimer_);
  rejoinTimer_ = deps_.scheduler->after(options_.rejoinAfter, [this, alive = alive_] {
    if (!*alive) return;
    rejoinTimer_.reset();
    if (!started_ || joined_) return;
    log("joining the checkpoint group again");
    joined_ = true;
    Status joined = deps_.group->join(this);
    if (!joined.ok()) log("cannot join the checkpoint group: " + joined.error().message);
  });
}

// ---- Housekeeping -------------------------------------------------------------------------------

bool CheckpointService::isDecider() const {
  return inGroup_ && store_ && !syncing_ && view_.quorate && !view_.members.empty() && *view_.members.begin() == self_;
}

void CheckpointService::sendOwn(OpBody body) {
  queue(Op{self_, session_, ++counter_, deps_.scheduler->now(), std::move(body), false});
}

void CheckpointService::housekeeping() {
  if (!isDecider()) {
    if (expiryTimer_) deps_.scheduler->cancel(*expiryTimer_);
    expiryTimer_.reset();
    expiryAt_.reset();
    return;
  }
  if (!closeInFlight_) {
    // Opens held by processes no longer in the group: their node left, or runs another session.
    std::vector<std::pair<int, std::uint64_t>> dead = store_->deadSessions([this](int node, std::uint64_t session) {
      if (!view_.members.contains(node)) return false;
      auto it = sessions_.find(node);
      return it == sessions_.end() || it->second == session;
    });
    if (!dead.empty()) {
      closeInFlight_ = true;
      sendOwn(CloseOpeners{std::move(dead)});
    }
  }
  const std::optional<TimePoint> next = store_->nextDeadline();
  if (expiryTimer_ && expiryAt_ == next) return;
  if (expiryTimer_) deps_.scheduler->cancel(*expiryTimer_);
  expiryTimer_.reset();
  expiryAt_ = next;
  if (!next) return;
  expiryTimer_ = deps_.scheduler->at(*next, [this, alive = alive_] {
    if (!*alive) return;
    expiryTimer_.reset();
    expiryAt_.reset();
    if (!isDecider() || expireInFlight_) return;
    const std::optional<TimePoint> due = store_->nextDeadline();
    if (due && *due <= deps_.scheduler->now()) {
      expireInFlight_ = true;
      sendOwn(Expire{});
    } else {
      housekeeping();
    }
  });
}

}  // namespace kvm_amf::ckpt
