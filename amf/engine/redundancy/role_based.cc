#include "role_based.h"

#include <algorithm>
#include <set>

namespace kvm_amf::engine {
namespace {

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

bool holdsAny(const GroupView& group, const std::string& unit, std::initializer_list<HaState> states) {
  for (const auto& si : group.sis) {
    for (HaState ha : states) {
      if (holds(si, unit, ha)) return true;
    }
  }
  return false;
}

}  // namespace

std::map<std::string, SiTarget> roleBasedTarget(const GroupView& group, int activeUnits, int standbyUnits) {
  const auto& r = group.spec->redundancy;
  std::vector<std::string> ready;
  for (const auto& u : group.units) {
    if (u.inService) ready.push_back(u.name);
  }

  // The active units: where SIs are (sticky), then standby units (a hot standby takes over
  // fastest), then the best-ranked others; or purely by rank when rebalancing.
  std::vector<std::string> active;
  auto addActive = [&](const std::string& unit) {
    if (static_cast<int>(active.size()) < activeUnits && !contains(active, unit)) active.push_back(unit);
  };
  if (!group.rebalance) {
    for (const auto& u : ready) {
      if (holdsAny(group, u, {HaState::kActive, HaState::kQuiescing})) addActive(u);
    }
    for (const auto& u : ready) {
      if (holdsAny(group, u, {HaState::kStandby})) addActive(u);
    }
  }
  for (const auto& u : ready) addActive(u);

  // si-swap: the preferred unit replaces the SI's current active unit among the active units.
  for (const auto& si : group.sis) {
    const std::string& preferred = si.preferredActive;
    if (preferred.empty() || !contains(ready, preferred) || contains(active, preferred)) continue;
    auto current = holders(group, si, HaState::kActive);
    auto out = std::find_if(active.begin(), active.end(), [&](const std::string& u) { return contains(current, u); });
    if (out == active.end() && !active.empty()) out = active.end() - 1;
    if (out != active.end()) *out = preferred;
  }

  std::vector<std::string> standby;
  auto addStandby = [&](const std::string& unit) {
    if (static_cast<int>(standby.size()) < standbyUnits && !contains(active, unit) && !contains(standby, unit)) {
      standby.push_back(unit);
    }
  };
  if (!group.rebalance) {
    for (const auto& u : ready) {
      if (holdsAny(group, u, {HaState::kStandby, HaState::kQuiesced})) addStandby(u);
    }
  }
  for (const auto& u : ready) addStandby(u);

  std::map<std::string, int> activeLoad;
  std::map<std::string, int> standbyLoad;
  std::map<std::string, SiTarget> target;
  for (const auto& si : group.sis) {
    if (!si.wanted) continue;
    SiTarget t;
    auto fits = [&](const std::string& u) { return activeLoad[u] < r.maxActiveSIsPerUnit; };
    std::vector<std::string> candidates;
    if (!si.preferredActive.empty()) candidates.push_back(si.preferredActive);
    if (!group.rebalance) {
      for (const auto& u : holders(group, si, HaState::kActive)) candidates.push_back(u);
      for (const auto& u : holders(group, si, HaState::kStandby)) candidates.push_back(u);
    }
    candidates.insert(candidates.end(), active.begin(), active.end());
    for (const auto& u : candidates) {
      if (contains(active, u) && fits(u)) {
        t.active.push_back(u);
        ++activeLoad[u];
        break;
      }
    }
    std::vector<std::string> standbyCandidates;
    if (!group.rebalance) standbyCandidates = holders(group, si, HaState::kStandby);
    standbyCandidates.insert(standbyCandidates.end(), standby.begin(), standby.end());
    for (const auto& u : standbyCandidates) {
      if (contains(standby, u) && standbyLoad[u] < r.maxStandbySIsPerUnit && !contains(t.active, u)) {
        t.standby.push_back(u);
        ++standbyLoad[u];
        break;
      }
    }
    if (!t.active.empty() || !t.standby.empty()) target[si.name] = t;
  }
  return target;
}

}  // namespace kvm_amf::engine
