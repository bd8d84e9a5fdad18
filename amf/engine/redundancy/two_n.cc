// 2N: one active unit holding every SI active, one standby unit holding them all standby.
#include "role_based.h"

namespace kvm_amf::engine {
namespace {

class TwoN final : public RedundancyModel {
 public:
  std::map<std::string, SiTarget> target(const GroupView& group) const override { return roleBasedTarget(group, 1, 1); }
};

}  // namespace

const RedundancyModel& twoNModel() {
  static const TwoN kModel;
  return kModel;
}

}  // namespace kvm_amf::engine
