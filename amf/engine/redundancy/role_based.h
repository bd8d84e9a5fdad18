// 2N and N+M: every unit has one role, active or standby, for all the SIs it holds. N units are
// active, M standby; a failed active unit's SIs go to a standby unit, which becomes active.
#pragma once

#include "redundancy_model.h"

namespace kvm_amf::engine {

std::map<std::string, SiTarget> roleBasedTarget(const GroupView& group, int activeUnits, int standbyUnits);

}  // namespace kvm_amf::engine
