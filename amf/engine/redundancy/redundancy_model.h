// Redundancy models as strategies: from the units' readiness and the current assignments, each
// says which units should hold each SI active and standby. Transitions (quiesce before moving,
// no second active before the first is gone) are the engine's, common to all models.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kvm_amf/amf/engine/cluster_state.h"

namespace kvm_amf::engine {

struct UnitStatus {
  std::string name;
  int rank = 0;
  bool inService = false;  // readiness in-service: may take new assignments
};

struct SiStatus {
  std::string name;
  int rank = 0;
  bool wanted = false;  // the SI (and its group) is unlocked: it should be assigned
  std::vector<Assignment> assignments;
  std::string preferredActive;  // si-swap target, or empty
};

// One service group as a strategy sees it; units and SIs sorted by rank, then name.
struct GroupView {
  const model::ServiceGroupSpec* spec = nullptr;
  std::vector<UnitStatus> units;
  std::vector<SiStatus> sis;
  bool rebalance = false;  // failback or sg-adjust: prefer rank over keeping assignments where they are
};

struct SiTarget {
  std::vector<std::string> active;
  std::vector<std::string> standby;
  bool operator==(const SiTarget&) const = default;
};

class RedundancyModel {
 public:
  virtual ~RedundancyModel() = default;
  // The target of every wanted SI that can be placed; an SI absent from the result has none.
  virtual std::map<std::string, SiTarget> target(const GroupView& group) const = 0;
};

// The strategy of a model. The returned object lives for the program's duration.
const RedundancyModel& redundancyModel(model::RedundancyModel model);

// Helpers for the strategies.
bool holds(const SiStatus& si, const std::string& unit, HaState ha);
// The units holding `si` in `ha`, in rank order of `group.units`.
std::vector<std::string> holders(const GroupView& group, const SiStatus& si, HaState ha);
bool inService(const GroupView& group, const std::string& unit);

}  // namespace kvm_amf::engine
