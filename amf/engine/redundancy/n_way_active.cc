// N-Way-Active: every SI active on `activeUnits` units at once; no standby.
#include <algorithm>

#include "redundancy_model.h"

namespace kvm_amf::engine {
namespace {

class NWayActive final : public RedundancyModel {
 public:
  std::map<std::string, SiTarget> target(const GroupView& group) const override {
    const auto& r = group.spec->redundancy;
    std::map<std::string, int> load;
    std::map<std::string, SiTarget> target;
    for (const auto& si : group.sis) {
      if (!si.wanted) continue;
      SiTarget t;
      std::vector<std::string> candidates;
      if (!group.rebalance) candidates = holders(group, si, HaState::kActive);
      for (const auto& u : group.units) candidates.push_back(u.name);
      for (const auto& u : candidates) {
        if (static_cast<int>(t.active.size()) >= r.activeUnits) break;
        if (std::find(t.active.begin(), t.active.end(), u) != t.active.end()) continue;
        if (inService(group, u) && load[u] < r.maxActiveSIsPerUnit) {
          t.active.push_back(u);
          ++load[u];
        }
      }
      if (!t.active.empty()) target[si.name] = t;
    }
    return target;
  }
};

}  // namespace

const RedundancyModel& nWayActiveModel() {
  static const NWayActive kModel;
  return kModel;
}

}  // namespace kvm_amf::engine
