// N-Way: a unit may hold some SIs active and others standby; each SI has one active and
// `standbyUnits` standby assignments, never two on one unit.
#include <algorithm>

#include "redundancy_model.h"

namespace kvm_amf::engine {
namespace {

class NWay final : public RedundancyModel {
 public:
  std::map<std::string, SiTarget> target(const GroupView& group) const override {
    const auto& r = group.spec->redundancy;
    std::map<std::string, int> activeLoad;
    std::map<std::string, int> standbyLoad;
    std::map<std::string, SiTarget> target;
    for (const auto& si : group.sis) {
      if (!si.wanted) continue;
      SiTarget t;
      std::vector<std::string> candidates;
      if (!si.preferredActive.empty()) candidates.push_back(si.preferredActive);
      if (!group.rebalance) {
        for (const auto& u : holders(group, si, HaState::kActive)) candidates.push_back(u);
        for (const auto& u : holders(group, si, HaState::kStandby)) candidates.push_back(u);
      }
      for (const auto& u : group.units) candidates.push_back(u.name);
      for (const auto& u : candidates) {
        if (inService(group, u) && activeLoad[u] < r.maxActiveSIsPerUnit) {
          t.active.push_back(u);
          ++activeLoad[u];
          break;
        }
      }
      std::vector<std::string> standbyCandidates;
      if (!group.rebalance) standbyCandidates = holders(group, si, HaState::kStandby);
      for (const auto& u : group.units) standbyCandidates.push_back(u.name);
      for (const auto& u : standbyCandidates) {
        if (static_cast<int>(t.standby.size()) >= r.standbyUnits) break;
        const bool taken = std::find(t.standby.begin(), t.standby.end(), u) != t.standby.end() ||
                           std::find(t.active.begin(), t.active.end(), u) != t.active.end();
        if (!taken && inService(group, u) && standbyLoad[u] < r.maxStandbySIsPerUnit) {
          t.standby.push_back(u);
          ++standbyLoad[u];
        }
      }
      if (!t.active.empty() || !t.standby.empty()) target[si.name] = t;
    }
    return target;
  }
};

}  // namespace

const RedundancyModel& nWayModel() {
  static const NWay kModel;
  return kModel;
}

}  // namespace kvm_amf::engine
