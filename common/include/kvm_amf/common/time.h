// Time as the whole system counts it: milliseconds. A TimePoint is milliseconds since the epoch
// of the clock that produced it (the Unix epoch for the real clock, 0 for a simulation).
#pragma once

#include <chrono>

namespace kvm_amf {

using Duration = std::chrono::milliseconds;
using TimePoint = std::chrono::milliseconds;

}  // namespace kvm_amf
