// Reads of /proc and of pid files for the collectors. They block on the file system: call them on
// a worker or on the endpoint's thread, never on the event loop.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace kvm_amf::monitor {

struct ThreadSwitches {
  std::uint64_t voluntary = 0;    // voluntary_ctxt_switches: the thread gave up the CPU (waited)
  std::uint64_t involuntary = 0;  // nonvoluntary_ctxt_switches: the scheduler took the CPU away
};

// The pid a pid file holds (its first line, decimal); nullopt if it is missing or holds none.
std::optional<int> readPidFile(const std::string& path);

// Each live thread of process `pid` (by thread id) with its context switches, from
// PROC/PID/task/TID/status; empty if the process is gone. Threads that end while they are read
// are left out.
std::map<int, ThreadSwitches> readThreadSwitches(const std::string& proc, int pid);

// A process's own figures, from PROC/PID/{stat,statm,fd} and PROC/stat.
struct ProcessFigures {
  double cpuSeconds = 0;        // user + system
  double residentBytes = 0;     // resident set
  double virtualBytes = 0;      // address space
  double threads = 0;           // threads now
  double openFds = 0;           // open descriptors
  double startTimeSeconds = 0;  // since the Unix epoch
};
// `pid`: a number or "self". nullopt if PROC/PID/stat cannot be read.
std::optional<ProcessFigures> readProcess(const std::string& proc, const std::string& pid);

}  // namespace kvm_amf::monitor
