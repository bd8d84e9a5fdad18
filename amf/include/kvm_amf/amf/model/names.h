// The rule every configuration name follows (nodes, groups, units, VMs, SIs): a DNS label.
#pragma once

#include <string_view>

namespace kvm_amf::model {

// True for 1-63 of [a-z0-9-], starting and ending with a letter or digit.
bool isValidName(std::string_view name);

}  // namespace kvm_amf::model
