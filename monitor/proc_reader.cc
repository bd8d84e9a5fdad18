#include "proc_reader.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

namespace kvm_amf::monitor {

namespace {

std::optional<std::string> readFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The unsigned number after `key` in /proc/PID/status text ("key:\tNUMBER").
std::optional<std::uint64_t> statusField(const std::string& text, std::string_view key) {
  std::size_t at = 0;
  while ((at = text.find(key, at)) != std::string::npos) {
    if ((at == 0 || text[at - 1] == '\n') && text.compare(at + key.size(), 1, ":") == 0) {
      return std::strtoull(text.c_str() + at + key.size() + 1, nullptr, 10);
    }
    at += key.size();
  }
  return std::nullopt;
}

// The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses):
// fields[0] is the state (field 3 of proc(5)).
std::vector<std::string> statFields(const std::string& text) {
  std::vector<std::string> fields;
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return fields;
  std::istringstream in(text.substr(close + 1));
  for (std::string field; in >> field;) fields.push_back(field);
  return fields;
}

}  // namespace

std::optional<int> readPidFile(const std::string& path) {
  std::optional<std::string> text = readFile(path);
  if (!text) return std::nullopt;
  char* end = nullptr;
  const long pid = std::strtol(text->c_str(), &end, 10);
  if (end == text->c_str() || pid <= 0) return std::nullopt;
  return static_cast<int>(pid);
}

std::map<int, ThreadSwitches> readThreadSwitches(const std::string& proc, int pid) {
  std::map<int, ThreadSwitches> threads;
  std::error_code error;
  const std::filesystem::path tasks = std::filesystem::path(proc) / std::to_string(pid) / "task";
  for (const auto& entry : std::filesystem::directory_iterator(tasks, error)) {
    const std::string name = entry.path().filename().string();
    char* end = nullptr;
    const long tid = std::strtol(name.c_str(), &end, 10);
    if (*end != '\0' || tid <= 0) continue;
    std::optional<std::string> status = readFile((entry.path() / "status").string());
    if (!status) continue;  // the thread ended meanwhile
    std::optional<std::uint64_t> voluntary = statusField(*status, "voluntary_ctxt_switches");
    std::optional<std::uint64_t> involuntary = statusField(*status, "nonvoluntary_ctxt_switches");
    if (!voluntary || !involuntary) continue;
    threads[static_cast<int>(tid)] = {*voluntary, *involuntary};
  }
  return threads;
}

std::optional<ProcessFigures> readProcess(const std::string& proc, const std::string& pid) {
  const std::string base = proc + "/" + pid;
  std::optional<std::string> stat = readFile(base + "/stat");
  if (!stat) return std::nullopt;
  const std::vector<std::string> fields = statFields(*stat);
  // proc(5) numbers fields from 1 (pid) and 2 (comm); fields[0] is field 3.
  auto field = [&](std::size_t number) -> double {
    return fields.size() > number - 3 ? std::strtod(fields[number - 3].c_str(), nullptr) : 0;
  };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double pageSize = static_cast<double>(sysconf(_SC_PAGESIZE));
  ProcessFigures figures;
  figures.cpuSeconds = (field(14) + field(15)) / ticks;  // utime, stime
  figures.threads = field(20);
  figures.virtualBytes = field(23);
  figures.residentBytes = field(24) * pageSize;
  if (std::optional<std::string> host = readFile(proc + "/stat")) {
    // "btime SECONDS": when the host booted; the process started `starttime` ticks later.
    const std::size_t at = host->find("\nbtime ");
    if (at != std::string::npos) {
      figures.startTimeSeconds = std::strtod(host->c_str() + at + 7, nullptr) + field(22) / ticks;
    }
  }
  std::error_code error;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator(base + "/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++fds;
  }
  figures.openFds = fds;
  return figures;
}

}  // namespace kvm_amf::monitor
