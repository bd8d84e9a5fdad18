// N+M: N active units and M standby units; each SI active on one and standby on another.
#include "role_based.h"

namespace kvm_amf::engine {
namespace {

class NPlusM final : public RedundancyModel {
 public:
  std::map<std::string, SiTarget> target(const GroupView& group) const override {
    const auto& r = group.spec->redundancy;
    return roleBasedTarget(group, r.activeUnits, r.standbyUnits);
  }
};

}  // namespace

const RedundancyModel& nPlusMModel() {
  static const NPlusM kModel;
  return kModel;
}

}  // namespace kvm_amf::engine
