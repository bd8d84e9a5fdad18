// The AMF state vocabulary (SA Forum AMF), with the words of the user-facing contract.
#pragma once

namespace kvm_amf::model {

enum class HaState { kActive, kStandby, kQuiescing, kQuiesced };
enum class AdminState { kUnlocked, kLocked, kLockedInstantiation, kShuttingDown };
enum class OperState { kEnabled, kDisabled };
enum class PresenceState {
  kUninstantiated,
  kInstantiating,
  kInstantiated,
  kTerminating,
  kRestarting,
  kInstantiationFailed,
  kTerminationFailed,
};
enum class ReadinessState { kOutOfService, kInService, kStopping };

}  // namespace kvm_amf::model
