// The checkpoint service over the simulated group (cluster/sim) with simulated disks, on simulated
// time: three members, as three amfds would run it. Each member's disk contents outlive its
// process, so a test can crash members and start them again from what they had on disk.
#include "kvm_amf/ckpt/checkpoint_service.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvm_amf/ckpt/sim_checkpoint_disk.h"
#include "kvm_amf/cluster/sim_network.h"
#include "kvm_amf/sim/sim_scheduler.h"

namespace kvm_amf::ckpt {
namespace {

using namespace std::chrono_literals;
using Outcome = std::shared_ptr<std::optional<CkptResult<std::uint64_t>>>;

class CheckpointServiceTest : public ::testing::Test {
 protected:
  struct Member {
    std::shared_ptr<SimDiskContents> contents = std::make_shared<SimDiskContents>();
    std::unique_ptr<SimCheckpointDisk> disk;
    std::unique_ptr<cluster::GroupChannel> channel;
    std::unique_ptr<CheckpointService> service;
    std::vector<std::string> log;
  };

  void SetUp() override {
    for (int id : {1, 2, 3}) start(id);
    run(1s);
    for (int id : {1, 2, 3}) ASSERT_TRUE(service(id).synced()) << "member " << id;
  }

  void TearDown() override {
    for (auto& [id, member] : members_) {
      if (HasFailure()) {
        for (const auto& line : member.log) std::cerr << "member " << id << ": " << line << "\n";
      }
    }
  }

  // Starts member `id` from what its disk holds, as a restarted amfd would (`session` 0: from the
  // clock, as amfd's).
  void start(int id, std::uint64_t session = 0) {
    Member& m = members_[id];
    m.disk = std::make_unique<SimCheckpointDisk>(scheduler_, m.contents, Duration(2));
    m.channel = network_.channel(id);
    Result<std::optional<CheckpointStore>> loaded = m.contents->load();
    const bool refused = !loaded.ok();
    CheckpointServiceOptions options;
    options.session = session != 0 ? session : static_cast<std::uint64_t>(scheduler_.now().count()) + 1;
    options.rejoinAfter = 5s;
    options.snapshotChunkBytes = 100;  // several chunks for any real state
    options.logger = [log = &m.log](const std::string& line) { log->push_back(line); };
    m.service =
        std::make_unique<CheckpointService>(CheckpointServiceDeps{&scheduler_, m.channel.get(), m.disk.get()}, options,
                                            refused ? std::nullopt : std::move(loaded).value(), !refused);
    ASSERT_TRUE(m.service->start().ok());
  }

  // The process of member `id` dies; its disk contents stay.
  void crash(int id) {
    Member& m = members_.at(id);
    m.service.reset();
    m.channel.reset();
    m.disk.reset();
  }

  void run(Duration d) { scheduler_.runUntil(scheduler_.now() + d); }

  CheckpointService& service(int id) { return *members_.at(id).service; }
  SimDiskContents& disk(int id) { return *members_.at(id).contents; }

  Outcome submit(int id, OpBody body, WriteMode mode = WriteMode::kSync) {
    auto outcome = std::make_shared<std::optional<CkptResult<std::uint64_t>>>();
    service(id).submit(std::move(body), mode, [outcome](CkptResult<std::uint64_t> r) { *outcome = std::move(r); });
    return outcome;
  }
  Outcome put(int id, const std::string& name, const std::string& section, const std::string& data,
              WriteMode mode = WriteMode::kSync) {
    return submit(id, OverwriteSection{name, section, data, true, CheckpointAttributes{}, std::nullopt}, mode);
  }
  // Writes and waits for the answer; fails the test unless it is ok.
  void written(int id, OpBody body) {
    Outcome outcome = submit(id, std::move(body));
    run(100ms);
    ASSERT_TRUE(outcome->has_value()) << "no answer";
    ASSERT_TRUE(outcome->value().ok()) << outcome->value().error().message;
  }

  std::string read(int id, const std::string& name, const std::string& section) {
    CkptResult<std::string> r = service(id).read(name, section);
    return r.ok() ? r.value() : "<" + std::string(errorKindName(r.error().kind)) + ">";
  }
  // What a process starting on member `id`'s host would find on its disk.
  std::string onDisk(int id, const std::string& name, const std::string& section) {
    Result<std::optional<CheckpointStore>> loaded = disk(id).load();
    if (!loaded.ok()) return "<" + loaded.error().message + ">";
    if (!loaded.value()) return "<empty>";
    CkptResult<std::string> r = loaded.value()->read(name, section);
    return r.ok() ? r.value() : "<" + std::string(errorKindName(r.error().kind)) + ">";
  }

  sim::SimScheduler scheduler_;
  cluster::SimNetwork network_{scheduler_, {1, 2, 3}, false, cluster::SimNetworkTiming{Duration(100), Duration(1)}};
  std::map<int, Member> members_;
};

TEST_F(CheckpointServiceTest, AWriteIsReplicatedToEveryMemberAndItsDisk) {
  Outcome outcome = put(2, "c", "s", "hello");
  run(100ms);
  ASSERT_TRUE(outcome->has_value());
  ASSERT_TRUE(outcome->value().ok()) << outcome->value().error().message;
  for (int id : {1, 2, 3}) {
    EXPECT_EQ(read(id, "c", "s"), "hello") << id;
    EXPECT_EQ(onDisk(id, "c", "s"), "hello") << id;
    EXPECT_TRUE(*service(id).store() == *service(1).store()) << id;
  }
}

TEST_F(CheckpointServiceTest, ASyncWriteIsAnsweredOnlyOnceEveryMemberHasItOnDisk) {
  disk(3).hold = true;
  Outcome outcome = put(1, "c", "s", "v1");
  run(500ms);
  EXPECT_EQ(read(3, "c", "s"), "v1") << "member 3 applied it";
  EXPECT_LT(service(3).durableSeq(), service(3).store()->seq()) << "but has not written it";
  EXPECT_FALSE(outcome->has_value()) << "answered before member 3 had it on disk";
  members_.at(3).disk->release();
  run(100ms);
  ASSERT_TRUE(outcome->has_value());
  EXPECT_TRUE(outcome->value().ok());
  EXPECT_EQ(onDisk(3, "c", "s"), "v1");
}

TEST_F(CheckpointServiceTest, AnAsyncWriteIsAnsweredOnceTheOriginAppliedIt) {
  for (int id : {1, 2, 3}) disk(id).hold = true;
  Outcome outcome = put(1, "c", "s", "fast", WriteMode::kAsync);
  run(50ms);
  ASSERT_TRUE(outcome->has_value());
  EXPECT_TRUE(outcome->value().ok());
  EXPECT_EQ(onDisk(1, "c", "s"), "<not-found>");
}

TEST_F(CheckpointServiceTest, WritesOfOneTurnShareOneMessageOneDiskWriteAndOneAcknowledgement) {
  const CheckpointServiceStats before = service(1).stats();
  std::vector<Outcome> outcomes;
  for (int i = 0; i < 100; ++i) outcomes.push_back(put(1, "c", "s" + std::to_string(i), std::string(1024, 'x')));
  run(200ms);
  for (const Outcome& outcome : outcomes) {
    ASSERT_TRUE(outcome->has_value());
    EXPECT_TRUE(outcome->value().ok());
  }
  EXPECT_EQ(service(1).stats().opMessagesSent - before.opMessagesSent, 1u);
  for (int id : {2, 3}) {
    EXPECT_EQ(service(id).stats().appliedSent, 1u) << id;
    EXPECT_LE(disk(id).syncs, 3u) << id;  // the first snapshot, then the writes
  }
  // Nobody waits for the writer's own "applied".
  EXPECT_EQ(service(1).stats().appliedSent, 0u);
}

TEST_F(CheckpointServiceTest, AsyncWritesCostNoAcknowledgements) {
  for (int i = 0; i < 10; ++i) {
    put(2, "c", "s", std::to_string(i), WriteMode::kAsync);
    run(5ms);
  }
  run(100ms);
  for (int id : {1, 2, 3}) {
    EXPECT_EQ(service(id).stats().appliedSent, 0u) << id;
    EXPECT_EQ(onDisk(id, "c", "s"), "9") << id;
  }
}

TEST_F(CheckpointServiceTest, AMemberLeavingMidWriteIsNoLongerWaitedFor) {
  disk(3).hold = true;
  Outcome outcome = put(1, "c", "s", "v");
  run(50ms);
  EXPECT_FALSE(outcome->has_value());
  crash(3);
  network_.hostDown(3);
  run(1s);
  ASSERT_TRUE(outcome->has_value());
  EXPECT_TRUE(outcome->value().ok());
  EXPECT_EQ(onDisk(1, "c", "s"), "v");
  EXPECT_EQ(onDisk(2, "c", "s"), "v");
}

TEST_F(CheckpointServiceTest, WhenTheWriterDiesEveryAcknowledgedWriteIsOnTheSurvivorsAndNoneIsHalfApplied) {
  // A stream of sync writes, each the next counter value filling a whole 1 KiB section, one after
  // another as a client would send them; the writer's host dies in the middle.
  std::uint64_t acknowledged = 0;
  std::uint64_t next = 1;
  std::function<void()> writeNext = [&] {
    const std::uint64_t value = next++;
    std::string data = std::to_string(value);
    data.resize(1024, '.');
    service(1).put(
        "stream", "counter", data, WriteMode::kSync,
        [&, value](CkptResult<std::uint64_t> r) {
          if (!r.ok()) return;
          acknowledged = std::max(acknowledged, value);
          if (members_.at(1).service) writeNext();
        },
        CheckpointAttributes{});
  };
  for (int i = 0; i < 4; ++i) writeNext();  // four in flight at any time
  run(500ms);
  ASSERT_GT(acknowledged, 20u);
  const std::uint64_t ackedBeforeCrash = acknowledged;
  crash(1);
  network_.hostDown(1);
  run(2s);
  for (int id : {2, 3}) {
    const std::string value = read(id, "stream", "counter");
    ASSERT_EQ(value.size(), 1024u) << id << ": " << value;
    const std::uint64_t seen = std::stoull(value.substr(0, value.find('.')));
    EXPECT_GE(seen, ackedBeforeCrash) << "member " << id << " lost an acknowledged write";
    EXPECT_LT(seen, next);
    EXPECT_EQ(value.find_first_not_of('.', value.find('.')), std::string::npos) << "half a write";
    EXPECT_EQ(onDisk(id, "stream", "counter"), value) << id;
  }
  EXPECT_TRUE(*service(2).store() == *service(3).store());
  // The survivors go on taking writes.
  written(2, OverwriteSection{"stream", "counter", "after", false, std::nullopt, std::nullopt});
  EXPECT_EQ(read(3, "stream", "counter"), "after");
}

TEST_F(CheckpointServiceTest, AJoiningMemberGetsTheGroupsState) {
  crash(3);
  network_.hostDown(3);
  run(1s);
  members_.at(3).contents = std::make_shared<SimDiskContents>();  // a new host: an empty disk
  written(1, CreateCheckpoint{"c", {}});
  for (int i = 0; i < 20; ++i) written(2, CreateSection{"c", "s" + std::to_string(i), std::string(50, 'd'), {}});
  network_.hostUp(3);
  run(1s);
  start(3);
  run(1s);
  ASSERT_TRUE(service(3).synced());
  EXPECT_TRUE(*service(3).store() == *service(1).store());
  EXPECT_EQ(read(3, "c", "s19"), std::string(50, 'd'));
  EXPECT_EQ(onDisk(3, "c", "s19"), std::string(50, 'd'));
  EXPECT_GT(service(1).stats().snapshotsSent + service(2).stats().snapshotsSent, 0u);
  // And it is a member like the others: a write waits for it.
  disk(3).hold = true;
  Outcome outcome = put(1, "c", "new", "x");
  run(200ms);
  EXPECT_FALSE(outcome->has_value());
  members_.at(3).disk->release();
  run(100ms);
  EXPECT_TRUE(outcome->has_value());
}

TEST_F(CheckpointServiceTest, WritesDuringAStateTransferAreNeitherLostNorAppliedTwice) {
  crash(3);
  network_.hostDown(3);
  run(1s);
  written(1, CreateCheckpoint{"c", {}});
  network_.hostUp(3);
  run(1s);
  start(3);
  run(1ms);  // the view with member 3 is delivered: the transfer begins
  // Writes from both old members while the state is transferred to member 3.
  std::vector<Outcome> outcomes;
  for (int i = 0; i < 30; ++i) {
    outcomes.push_back(submit(1 + i % 2, WriteSection{"c", "log", 0, ""}));  // refused: no section yet
    outcomes.push_back(put(1 + i % 2, "c", "n" + std::to_string(i), std::to_string(i)));
  }
  run(1s);
  ASSERT_TRUE(service(3).synced());
  EXPECT_GT(service(3).stats().opsDuringTransfer, 10u) << "the writes did not come during the transfer";
  for (int id : {2, 3}) EXPECT_TRUE(*service(id).store() == *service(1).store()) << id;
  for (int i = 0; i < 30; ++i) EXPECT_EQ(read(3, "c", "n" + std::to_string(i)), std::to_string(i));
  int ok = 0;
  for (const Outcome& outcome : outcomes) {
    ASSERT_TRUE(outcome->has_value());
    if (outcome->value().ok()) {
      ++ok;
    } else {
      EXPECT_TRUE(outcome->value().error().kind == ErrorKind::kNotFound ||
                  outcome->value().error().kind == ErrorKind::kInterrupted)
          << errorKindName(outcome->value().error().kind) << ": " << outcome->value().error().message;
    }
  }
  EXPECT_GE(ok, 25);
}

TEST_F(CheckpointServiceTest, AWholeGroupRestartKeepsEveryCheckpoint) {
  CheckpointAttributes attributes;
  attributes.maxSections = 5;
  written(1, CreateCheckpoint{"kept", attributes});
  written(2, CreateSection{"kept", "a", "alpha", std::nullopt});
  written(3, OverwriteSection{"other", "b", "beta", true, CheckpointAttributes{}, std::nullopt});
  const CheckpointStore before = *service(1).store();
  for (int id : {1, 2, 3}) crash(id);
  run(10s);
  for (int id : {3, 1, 2}) start(id);
  run(2s);
  for (int id : {1, 2, 3}) {
    ASSERT_TRUE(service(id).synced()) << id;
    EXPECT_EQ(read(id, "kept", "a"), "alpha") << id;
    EXPECT_EQ(read(id, "other", "b"), "beta") << id;
    EXPECT_EQ(service(id).info("kept").value().attributes.maxSections, 5u);
    EXPECT_EQ(service(id).store()->state().checkpoints, before.state().checkpoints) << id;
  }
}

TEST_F(CheckpointServiceTest, AfterAWholeGroupRestartTheFreshestStateWins) {
  written(1, OverwriteSection{"c", "s", "old", true, CheckpointAttributes{}, std::nullopt});
  crash(3);
  network_.hostDown(3);
  run(1s);
  written(1, OverwriteSection{"c", "s", "new", false, std::nullopt, std::nullopt});
  crash(1);
  crash(2);
  network_.hostUp(3);
  run(10s);
  // Member 3, whose disk is the stalest, starts first, with member 2.
  start(3);
  start(2);
  run(2s);
  EXPECT_EQ(read(3, "c", "s"), "new");
  start(1);
  run(2s);
  for (int id : {1, 2, 3}) EXPECT_EQ(read(id, "c", "s"), "new") << id;
}

TEST_F(CheckpointServiceTest, AMemberWhoseDiskWasRefusedTakesTheStateFromItsPeers) {
  written(1, OverwriteSection{"c", "s", "value", true, CheckpointAttributes{}, std::nullopt});
  crash(2);
  disk(2).snapshot = "garbage";
  ASSERT_FALSE(disk(2).load().ok());
  run(1s);
  start(2);
  run(1s);
  ASSERT_TRUE(service(2).synced());
  EXPECT_EQ(read(2, "c", "s"), "value");
  EXPECT_EQ(onDisk(2, "c", "s"), "value") << "its disk holds the group's state again";
}

TEST_F(CheckpointServiceTest, ARestartWhoseClockWentBackStillWrites) {
  crash(2);
  run(1s);
  start(2, 100'000);
  run(1s);
  written(2, OverwriteSection{"c", "s", "before", true, CheckpointAttributes{}, std::nullopt});
  const std::uint64_t first = service(2).session();
  crash(2);
  run(1s);
  start(2, 7);  // a session below the last one: the clock was set back
  run(1s);
  ASSERT_TRUE(service(2).synced());
  EXPECT_GT(service(2).session(), first);
  written(2, OverwriteSection{"c", "s", "after", false, std::nullopt, std::nullopt});
  for (int id : {1, 2, 3}) EXPECT_EQ(read(id, "c", "s"), "after") << id;
}

TEST_F(CheckpointServiceTest, WithoutQuorumWritesAndReadsAreRefused) {
  written(1, OverwriteSection{"c", "s", "before", true, CheckpointAttributes{}, std::nullopt});
  network_.partition({{1}, {2, 3}});
  run(1s);
  Outcome outcome = put(1, "c", "s", "minority");
  ASSERT_TRUE(outcome->has_value()) << "refused at once";
  ASSERT_FALSE(outcome->value().ok());
  EXPECT_EQ(outcome->value().error().kind, ErrorKind::kNoQuorum);
  EXPECT_EQ(outcome->value().error().message, "no quorum: checkpoint writes need a quorate cluster");
  EXPECT_EQ(service(1).read("c", "s").error().kind, ErrorKind::kNoQuorum);
  written(2, OverwriteSection{"c", "s", "majority", false, std::nullopt, std::nullopt});
  network_.heal();
  run(2s);
  for (int id : {1, 2, 3}) EXPECT_EQ(read(id, "c", "s"), "majority") << id;
}

TEST_F(CheckpointServiceTest, AWriteInFlightWhenQuorumIsLostIsReportedInterrupted) {
  disk(2).hold = true;
  Outcome outcome = put(1, "c", "s", "x");
  run(20ms);
  EXPECT_FALSE(outcome->has_value());
  network_.partition({{1}, {2, 3}});
  run(1s);
  ASSERT_TRUE(outcome->has_value());
  ASSERT_FALSE(outcome->value().ok());
  EXPECT_EQ(outcome->value().error().kind, ErrorKind::kInterrupted);
}

TEST_F(CheckpointServiceTest, AMemberThatCannotPersistLeavesAndComesBackLater) {
  disk(3).failure = "No space left on device";
  Outcome outcome = put(1, "c", "s", "v");
  run(500ms);
  ASSERT_TRUE(outcome->has_value());
  EXPECT_TRUE(outcome->value().ok()) << "member 3 left: not waited for";
  EXPECT_FALSE(service(3).synced());
  EXPECT_EQ(service(1).members(), (std::set<int>{1, 2}));
  EXPECT_EQ(service(3).stats().diskFailures, 1u);
  EXPECT_EQ(service(3).read("c", "s").error().kind, ErrorKind::kUnavailable);
  // Writes go on without it.
  written(2, OverwriteSection{"c", "s", "v2", false, std::nullopt, std::nullopt});
  // Room again: it joins after rejoinAfter and takes the group's state.
  disk(3).failure.reset();
  run(6s);
  ASSERT_TRUE(service(3).synced());
  EXPECT_EQ(read(3, "c", "s"), "v2");
  EXPECT_EQ(onDisk(3, "c", "s"), "v2");
  EXPECT_EQ(service(1).members(), (std::set<int>{1, 2, 3}));
}

TEST_F(CheckpointServiceTest, AnOriginWhoseDiskLacksRoomRefusesUpFront) {
  disk(1).free = 1000;
  Outcome outcome = put(1, "c", "s", "v");
  ASSERT_TRUE(outcome->has_value());
  ASSERT_FALSE(outcome->value().ok());
  EXPECT_EQ(outcome->value().error().kind, ErrorKind::kNoSpace);
  EXPECT_NE(outcome->value().error().message.find("disk full: 1000 bytes free"), std::string::npos);
  EXPECT_EQ(service(1).stats().opsSent, 0u);
}

TEST_F(CheckpointServiceTest, RefusalsComeBackFromTheStoreAndChangeNothingAnywhere) {
  Outcome missing = submit(2, WriteSection{"none", "s", 0, "x"});
  Outcome bad = submit(2, CreateCheckpoint{"not valid", {}});
  ASSERT_TRUE(bad->has_value()) << "an invalid name is refused before it is sent";
  EXPECT_EQ(bad->value().error().kind, ErrorKind::kInvalid);
  run(100ms);
  ASSERT_TRUE(missing->has_value());
  EXPECT_EQ(missing->value().error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(missing->value().error().message, "no checkpoint 'none'");
  for (int id : {1, 2, 3}) EXPECT_TRUE(service(id).store()->list().empty());
}

TEST_F(CheckpointServiceTest, RetentionAndExpiryRemoveEverywhereAlike) {
  CheckpointAttributes attributes;
  attributes.retention = 3s;
  written(2, OpenCheckpoint{"held", "app", attributes});
  written(2, CreateCheckpoint{"idle", attributes});
  written(3, CreateCheckpoint{"sections", {}});
  written(3, CreateSection{"sections", "soon", "x", scheduler_.now() + 2s});
  written(3, CreateSection{"sections", "never", "y", std::nullopt});
  run(5s);
  for (int id : {1, 2, 3}) {
    EXPECT_TRUE(service(id).info("held").ok()) << "held open";
    EXPECT_EQ(service(id).info("idle").error().kind, ErrorKind::kNotFound) << id;
    EXPECT_EQ(read(id, "sections", "soon"), "<not-found>") << id;
    EXPECT_EQ(read(id, "sections", "never"), "y") << id;
  }
  written(2, CloseCheckpoint{"held", "app"});
  run(2s);
  EXPECT_TRUE(service(1).info("held").ok());
  run(2s);
  for (int id : {1, 2, 3}) {
    EXPECT_EQ(service(id).info("held").error().kind, ErrorKind::kNotFound) << id;
    EXPECT_TRUE(*service(id).store() == *service(1).store()) << id;
  }
}

TEST_F(CheckpointServiceTest, TheOpensOfAMemberThatLeavesAreClosed) {
  CheckpointAttributes attributes;
  attributes.retention = 2s;
  written(3, OpenCheckpoint{"c", "app", attributes});
  written(1, OpenCheckpoint{"c", "other", std::nullopt});
  crash(3);
  network_.hostDown(3);
  run(1s);
  EXPECT_EQ(service(1).info("c").value().openers, 1u) << "member 3's open is closed";
  written(1, CloseCheckpoint{"c", "other"});
  run(3s);
  for (int id : {1, 2}) EXPECT_EQ(service(id).info("c").error().kind, ErrorKind::kNotFound) << id;
}

TEST_F(CheckpointServiceTest, TheDeciderLeavingHandsHousekeepingToTheNextMember) {
  CheckpointAttributes attributes;
  attributes.retention = 3s;
  written(2, CreateCheckpoint{"c", attributes});
  crash(1);
  network_.hostDown(1);
  run(4s);
  for (int id : {2, 3}) EXPECT_EQ(service(id).info("c").error().kind, ErrorKind::kNotFound) << id;
}

TEST_F(CheckpointServiceTest, StoppingFailsWhatWaitsAndRefusesWhatComes) {
  disk(2).hold = true;
  Outcome outcome = put(1, "c", "s", "x");
  run(20ms);
  service(1).stop();
  ASSERT_TRUE(outcome->has_value());
  EXPECT_EQ(outcome->value().error().kind, ErrorKind::kUnavailable);
  Outcome later = put(1, "c", "s", "y");
  ASSERT_TRUE(later->has_value());
  EXPECT_EQ(later->value().error().kind, ErrorKind::kUnavailable);
}

TEST_F(CheckpointServiceTest, ASnapshotIsTakenOnceTheLogGrowsLarge) {
  crash(1);
  disk(1) = SimDiskContents{};
  network_.hostDown(1);
  run(1s);
  network_.hostUp(1);
  run(1s);
  Member& m = members_.at(1);
  m.disk = std::make_unique<SimCheckpointDisk>(scheduler_, m.contents, Duration(2));
  m.channel = network_.channel(1);
  CheckpointServiceOptions options;
  options.session = 99;
  options.snapshotAfterLogBytes = 10'000;
  m.service = std::make_unique<CheckpointService>(CheckpointServiceDeps{&scheduler_, m.channel.get(), m.disk.get()},
                                                  options, std::nullopt, true);
  ASSERT_TRUE(m.service->start().ok());
  run(1s);
  for (int i = 0; i < 40; ++i)
    written(2, OverwriteSection{"c", "s", std::string(1000, 'a' + i % 26), true, CheckpointAttributes{}, {}});
  ASSERT_TRUE(disk(1).log.has_value());
  EXPECT_LT(disk(1).log->records.size(), 15u) << "the log was restarted after a snapshot";
  EXPECT_EQ(onDisk(1, "c", "s"), std::string(1000, 'a' + 39 % 26));
}

}  // namespace
}  // namespace kvm_amf::ckpt
