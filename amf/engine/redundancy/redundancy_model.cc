#include "redundancy_model.h"

#include <algorithm>

namespace kvm_amf::engine {

const RedundancyModel& twoNModel();
const RedundancyModel& nPlusMModel();
const RedundancyModel& nWayModel();
const RedundancyModel& nWayActiveModel();
const RedundancyModel& noRedundancyModel();

const RedundancyModel& redundancyModel(model::RedundancyModel model) {
  switch (model) {
    case model::RedundancyModel::k2N:
      return twoNModel();
    case model::RedundancyModel::kNPlusM:
      return nPlusMModel();
    case model::RedundancyModel::kNWay:
      return nWayModel();
    case model::RedundancyModel::kNWayActive:
      return nWayActiveModel();
    case model::RedundancyModel::kNoRedundancy:
      break;
  }
  return noRedundancyModel();
}

bool holds(const SiStatus& si, const std::string& unit, HaState ha) {
  return std::any_of(si.assignments.begin(), si.assignments.end(),
                     [&](const Assignment& a) { return a.su == unit && a.ha == ha; });
}

std::vector<std::string> holders(const GroupView& group, const SiStatus& si, HaState ha) {
  std::vector<std::string> out;
  for (const auto& unit : group.units) {
    if (holds(si, unit.name, ha)) out.push_back(unit.name);
  }
  return out;
}

bool inService(const GroupView& group, const std::string& unit) {
  return std::any_of(group.units.begin(), group.units.end(),
                     [&](const UnitStatus& u) { return u.name == unit && u.inService; });
}

}  // namespace kvm_amf::engine
