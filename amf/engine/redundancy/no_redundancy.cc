// No-Redundancy: each SI active on one unit of its own; no standby. A lost unit is brought back
// cold (instantiated again, on another host if its own is gone) and takes its SI again.
#include "redundancy_model.h"

namespace kvm_amf::engine {
namespace {

class NoRedundancy final : public RedundancyModel {
 public:
  std::map<std::string, SiTarget> target(const GroupView& group) const override {
    std::map<std::string, int> load;
    std::map<std::string, SiTarget> target;
    // Keep SIs where they are first, so that a newcomer never displaces them.
    if (!group.rebalance) {
      for (const auto& si : group.sis) {
        for (const auto& u : holders(group, si, HaState::kActive)) {
          if (si.wanted && inService(group, u) && load[u] == 0 && target.count(si.name) == 0) {
            target[si.name].active.push_back(u);
            ++load[u];
          }
        }
      }
    }
    for (const auto& si : group.sis) {
      if (!si.wanted || target.count(si.name) != 0) continue;
      for (const auto& u : group.units) {
        if (u.inService && load[u.name] == 0) {
          target[si.name].active.push_back(u.name);
          ++load[u.name];
          break;
        }
      }
    }
    return target;
  }
};

}  // namespace

const RedundancyModel& noRedundancyModel() {
  static const NoRedundancy kModel;
  return kModel;
}

}  // namespace kvm_amf::engine
