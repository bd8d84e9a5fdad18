#include "kvm_amf/amf/model/words.h"

#include <array>

namespace kvm_amf::model {
namespace {

template <typename E, std::size_t N>
using Words = std::array<std::pair<E, std::string_view>, N>;

constexpr Words<FencingMode, 3> kFencingMode = {
    {{FencingMode::kAgent, "agent"}, {FencingMode::kSelf, "self"}, {FencingMode::kNone, "none"}}};
constexpr Words<Firmware, 2> kFirmware = {{{Firmware::kBios, "bios"}, {Firmware::kUefi, "uefi"}}};
constexpr Words<RealtimePolicy, 2> kRealtimePolicy = {{{RealtimePolicy::kFifo, "fifo"}, {RealtimePolicy::kRr, "rr"}}};
constexpr Words<DiskFormat, 2> kDiskFormat = {{{DiskFormat::kQcow2, "qcow2"}, {DiskFormat::kRaw, "raw"}}};
constexpr Words<DiskBus, 3> kDiskBus = {
    {{DiskBus::kVirtio, "virtio"}, {DiskBus::kSata, "sata"}, {DiskBus::kScsi, "scsi"}}};
constexpr Words<DiskCache, 5> kDiskCache = {{{DiskCache::kNone, "none"},
                                             {DiskCache::kWriteback, "writeback"},
                                             {DiskCache::kWritethrough, "writethrough"},
                                             {DiskCache::kDirectsync, "directsync"},
                                             {DiskCache::kUnsafe, "unsafe"}}};
constexpr Words<ConsoleType, 3> kConsoleType = {
    {{ConsoleType::kPty, "pty"}, {ConsoleType::kFile, "file"}, {ConsoleType::kNone, "none"}}};
constexpr Words<RedundancyModel, 5> kRedundancyModel = {{{RedundancyModel::k2N, "2N"},
                                                         {RedundancyModel::kNPlusM, "N+M"},
                                                         {RedundancyModel::kNWay, "N-Way"},
                                                         {RedundancyModel::kNWayActive, "N-Way-Active"},
                                                         {RedundancyModel::kNoRedundancy, "No-Redundancy"}}};
constexpr Words<RecoveryAction, 2> kRecoveryAction = {
    {{RecoveryAction::kRestart, "restart"}, {RecoveryAction::kFailover, "failover"}}};
constexpr Words<WatchdogModel, 3> kWatchdogModel = {
    {{WatchdogModel::kI6300esb, "i6300esb"}, {WatchdogModel::kIb700, "ib700"}, {WatchdogModel::kDiag288, "diag288"}}};
constexpr Words<WatchdogAction, 6> kWatchdogAction = {{{WatchdogAction::kReset, "reset"},
                                                       {WatchdogAction::kPoweroff, "poweroff"},
                                                       {WatchdogAction::kPause, "pause"},
                                                       {WatchdogAction::kNone, "none"},
                                                       {WatchdogAction::kDump, "dump"},
                                                       {WatchdogAction::kInjectNmi, "inject-nmi"}}};

constexpr Words<HaState, 4> kHaState = {{{HaState::kActive, "active"},
                                         {HaState::kStandby, "standby"},
                                         {HaState::kQuiescing, "quiescing"},
                                         {HaState::kQuiesced, "quiesced"}}};
constexpr Words<AdminState, 4> kAdminState = {{{AdminState::kUnlocked, "unlocked"},
                                               {AdminState::kLocked, "locked"},
                                               {AdminState::kLockedInstantiation, "locked-instantiation"},
                                               {AdminState::kShuttingDown, "shutting-down"}}};
constexpr Words<OperState, 2> kOperState = {{{OperState::kEnabled, "enabled"}, {OperState::kDisabled, "disabled"}}};
constexpr Words<PresenceState, 7> kPresenceState = {{{PresenceState::kUninstantiated, "uninstantiated"},
                                                     {PresenceState::kInstantiating, "instantiating"},
                                                     {PresenceState::kInstantiated, "instantiated"},
                                                     {PresenceState::kTerminating, "terminating"},
                                                     {PresenceState::kRestarting, "restarting"},
                                                     {PresenceState::kInstantiationFailed, "instantiation-failed"},
                                                     {PresenceState::kTerminationFailed, "termination-failed"}}};
constexpr Words<ReadinessState, 3> kReadinessState = {{{ReadinessState::kOutOfService, "out-of-service"},
                                                       {ReadinessState::kInService, "in-service"},
                                                       {ReadinessState::kStopping, "stopping"}}};

}  // namespace

WordTable<HaState> enumWords(HaState) { return kHaState; }
WordTable<AdminState> enumWords(AdminState) { return kAdminState; }
WordTable<OperState> enumWords(OperState) { return kOperState; }
WordTable<PresenceState> enumWords(PresenceState) { return kPresenceState; }
WordTable<ReadinessState> enumWords(ReadinessState) { return kReadinessState; }
WordTable<FencingMode> enumWords(FencingMode) { return kFencingMode; }
WordTable<Firmware> enumWords(Firmware) { return kFirmware; }
WordTable<RealtimePolicy> enumWords(RealtimePolicy) { return kRealtimePolicy; }
WordTable<DiskFormat> enumWords(DiskFormat) { return kDiskFormat; }
WordTable<DiskBus> enumWords(DiskBus) { return kDiskBus; }
WordTable<DiskCache> enumWords(DiskCache) { return kDiskCache; }
WordTable<ConsoleType> enumWords(ConsoleType) { return kConsoleType; }
WordTable<RedundancyModel> enumWords(RedundancyModel) { return kRedundancyModel; }
WordTable<RecoveryAction> enumWords(RecoveryAction) { return kRecoveryAction; }
WordTable<WatchdogModel> enumWords(WatchdogModel) { return kWatchdogModel; }
WordTable<WatchdogAction> enumWords(WatchdogAction) { return kWatchdogAction; }

}  // namespace kvm_amf::model
