// AMF administrative operations as operators write them ("lock su/mme-a"), for amf-admin,
// amf-sim scenarios and the admin API alike.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/common/result.h"

namespace kvm_amf::model {

// What an operation names: `node/NAME`, `ng/NAME`, `sg/NAME`, `su/NAME`, `si/NAME`, `vm/NAME`.
struct AdminTarget {
  enum class Kind { kNode, kNodeGroup, kServiceGroup, kServiceUnit, kServiceInstance, kVm };
  Kind kind = Kind::kServiceUnit;
  std::string name;
  bool operator==(const AdminTarget&) const = default;
};

enum class AdminVerb {
  kLock,                 // lock
  kUnlock,               // unlock
  kLockInstantiation,    // lock-in
  kUnlockInstantiation,  // unlock-in
  kShutdown,             // shutdown
  kRestart,              // restart
  kRepaired,             // repaired
  kSiSwap,               // si-swap
  kSgAdjust,             // sg-adjust
  kVmStart,              // vm start
  kVmShutdown,           // vm shutdown
  kVmDestroy,            // vm destroy
  kVmPause,              // vm pause
  kVmResume,             // vm resume
  kVmSuspend,            // vm suspend
  kVmReboot,             // vm reboot
  kVmReset,              // vm reset
  kMigrate,              // migrate su/NAME --to node/NAME
};

struct AdminCommand {
  AdminVerb verb = AdminVerb::kLock;
  AdminTarget target;
  std::optional<AdminTarget> to;        // kMigrate: the destination node
  std::optional<Duration> maxDowntime;  // kMigrate
  std::optional<Duration> timeout;      // kMigrate
  bool operator==(const AdminCommand&) const = default;
};

// Parses the words amf-admin takes after its options: "lock su/mme-a", "vm destroy vm/x",
// "migrate su/a --to node/n2 --max-downtime 200ms". Checks the verb applies to the target's kind
// (e.g. si-swap only on si/, sg-adjust only on sg/); does not check that the target exists.
Result<AdminCommand> parseAdminCommand(std::string_view text);

// The canonical words of a command; parseAdminCommand(formatAdminCommand(c)) == c.
std::string formatAdminCommand(const AdminCommand& command);

// "su/mme-a" and back.
Result<AdminTarget> parseAdminTarget(std::string_view text);
std::string formatAdminTarget(const AdminTarget& target);

}  // namespace kvm_amf::model
