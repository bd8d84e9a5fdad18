// Runs a program as a child process for a test: its standard error appended to a log file.
#pragma once

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace kvm_amf::testing {

// Forks and execs args[0] with args; the child's stderr goes to `log` (appended). Returns the
// child's pid, or -1 if fork failed. REQUIRES: args is not empty. The caller reaps the child.
inline pid_t spawnProcess(std::vector<std::string> args, const std::string& log) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) dup2(fd, STDERR_FILENO);
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

}  // namespace kvm_amf::testing
