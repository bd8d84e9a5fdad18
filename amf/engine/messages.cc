#include "kvm_amf/amf/engine/messages.h"
#include "kvm_amf/common/overloaded.h"

#include "kvm_amf/amf/model/words.h"

namespace kvm_amf::engine {
namespace {

std::string word(FailureKind kind) {
  switch (kind) {
    case FailureKind::kCrash:
      return "crash";
    case FailureKind::kWatchdog:
      return "watchdog";
    case FailureKind::kHang:
      return "hang";
    case FailureKind::kIoError:
      return "io-error";
    case FailureKind::kUnhealthy:
      break;
  }
  return "unhealthy";
}

std::string word(NodeStatus status) {
  switch (status) {
    case NodeStatus::kDown:
      return "down";
    case NodeStatus::kUp:
      return "up";
    case NodeStatus::kAmfdDown:
      return "amfd-down";
    case NodeStatus::kLost:
      return "lost";
    case NodeStatus::kFencing:
      break;
  }
  return "fencing";
}

constexpr std::pair<RestartMethod, std::string_view> kRestartMethods[] = {
    {RestartMethod::kRecreate, "recreate"}, {RestartMethod::kReboot, "reboot"}, {RestartMethod::kReset, "reset"}};
constexpr std::pair<VmStopMethod, std::string_view> kVmStopMethods[] = {
    {VmStopMethod::kShutdown, "shutdown"}, {VmStopMethod::kDestroy, "destroy"}, {VmStopMethod::kSuspend, "suspend"}};

std::string describeRestart(const RestartVm& a) {
  switch (a.method) {
    case RestartMethod::kReboot:
      return "reboot vm/" + a.vm + (a.counted ? "" : " (operator)");
    case RestartMethod::kReset:
      return "reset vm/" + a.vm + (a.counted ? "" : " (operator)");
    case RestartMethod::kRecreate:
      break;
  }
  return "restart vm/" + a.vm + (a.counted ? "" : " (admin)");
}

std::string describeStop(const StopVm& a) {
  if (a.node.empty()) return "hold vm/" + a.vm + " stopped (operator)";
  switch (a.method) {
    case VmStopMethod::kShutdown:
      return "shut down vm/" + a.vm + " on " + a.node + " (operator)";
    case VmStopMethod::kSuspend:
      return "suspend vm/" + a.vm + " on " + a.node + " (operator)";
    case VmStopMethod::kDestroy:
      break;
  }
  return "stop vm/" + a.vm + " on " + a.node + " (operator)";
}

}  // namespace

model::WordTable<RestartMethod> enumWords(RestartMethod) { return kRestartMethods; }
model::WordTable<VmStopMethod> enumWords(VmStopMethod) { return kVmStopMethods; }

bool ConfigChange::operator==(const ConfigChange& other) const {
  return id == other.id && from == other.from && baseGeneration == other.baseGeneration &&
         sameConfiguration(config, other.config);
}

bool SetConfiguration::operator==(const SetConfiguration& other) const {
  return generation == other.generation && sameConfiguration(config, other.config);
}

std::string nodeStatusWord(NodeStatus status) { return word(status); }
std::string failureWord(FailureKind kind) { return word(kind); }

std::string describe(const Action& action) {
  using model::toWord;
  return std::visit(
      Overloaded{
          [](const SetNodeStatus& a) { return "node " + a.node + " " + word(a.status) + " (" + a.reason + ")"; },
          [](const StartFence& a) { return "fence " + a.node; },
          [](const StartSu& a) { return "start su/" + a.su + " on " + a.node; },
          [](const StopSu& a) { return "stop su/" + a.su; },
          [](const RestartVm& a) { return describeRestart(a); },
          [](const RestartSu& a) { return "restart su/" + a.su + (a.counted ? "" : " (admin)"); },
          [](const FailoverSu& a) { return "failover su/" + a.su + (a.nodeLevel ? " (node failover)" : ""); },
          [](const SetNodeOper& a) { return "node " + a.node + " " + std::string(toWord(a.oper)); },
          [](const DestroyVm& a) { return "destroy stray vm/" + a.vm + " on " + a.node; },
          [](const RepairSu& a) { return "repair su/" + a.su; },
          [](const SetHa& a) { return "assign si/" + a.si + " " + std::string(toWord(a.ha)) + " to su/" + a.su; },
          [](const RemoveAssignment& a) { return "unassign si/" + a.si + " from su/" + a.su; },
          [](const SetAdmin& a) { return model::formatAdminTarget(a.target) + " " + std::string(toWord(a.admin)); },
          [](const SetPreferredActive& a) {
            return a.su.empty() ? "si/" + a.si + " swap done" : "si/" + a.si + " swap to su/" + a.su;
          },
          [](const SetSgAdjust& a) { return "sg/" + a.sg + (a.adjust ? " adjust" : " adjusted"); },
          [](const AdminReply& a) { return std::string(a.ok ? "admin ok: " : "admin refused: ") + a.message; },
          [](const SetConfiguration& a) { return "configuration generation " + std::to_string(a.generation); },
          [](const ConfigReply& a) {
            if (a.ok) return "configuration change accepted: generation " + std::to_string(a.generation);
            std::string text = "configuration change refused:";
            for (const auto& problem : a.problems) text += " " + problem + ";";
            if (!a.problems.empty()) text.pop_back();
            return text;
          },
          [](const StopVm& a) { return describeStop(a); },
          [](const StartVm& a) { return "start vm/" + a.vm + (a.node.empty() ? "" : " on " + a.node) + " (operator)"; },
          [](const SetVmPaused& a) {
            return std::string(a.paused ? "pause" : "resume") + " vm/" + a.vm + " on " + a.node;
          },
      },
      action);
}

std::string describe(const Report& report) {
  using model::toWord;
  return std::visit(
      Overloaded{
          [](const VmStarted& r) { return "vm/" + r.vm + " started on " + r.node; },
          [](const VmStartFailed& r) { return "vm/" + r.vm + " failed to start on " + r.node + ": " + r.reason; },
          [](const VmStopped& r) { return "vm/" + r.vm + " stopped on " + r.node; },
          [](const VmStopFailed& r) { return "vm/" + r.vm + " could not be stopped on " + r.node + ": " + r.reason; },
          [](const VmFailed& r) { return "vm/" + r.vm + " failed on " + r.node + ": " + word(r.kind); },
          [](const HaAcked& r) {
            return "su/" + r.su + " acknowledged " + std::string(toWord(r.ha)) + " for si/" + r.si;
          },
          [](const AgentUp& r) {
            return "node manager on " + r.node + " up with " + std::to_string(r.runningVms.size()) + " VMs running";
          },
          [](const FenceDone& r) { return "fencing " + r.node + (r.ok ? " succeeded" : " failed: " + r.message); },
          [](const AdminRequest& r) { return "admin request: " + model::formatAdminCommand(r.command); },
          [](const ConfigChange& r) {
            return "configuration change onto generation " + std::to_string(r.baseGeneration);
          },
      },
      report);
}

}  // namespace kvm_amf::engine
