#include "kvm_amf/common/shell_command.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

namespace kvm_amf {

pid_t spawnShell(const std::string& command, int inFd, int outFd, char* const* envp) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  if (inFd < 0) {
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  } else {
    posix_spawn_file_actions_adddup2(&actions, inFd, STDIN_FILENO);
  }
  posix_spawn_file_actions_adddup2(&actions, outFd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, outFd, STDERR_FILENO);
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);

  std::string shell = "sh";
  std::string dashC = "-c";
  std::string script = command;
  char* argv[] = {shell.data(), dashC.data(), script.data(), nullptr};
  pid_t pid = -1;
  const int error = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp != nullptr ? envp : environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return error == 0 ? pid : -error;
}

std::string lastLine(const std::string& output) {
  static constexpr const char* kBlank = " \t\r\n\v\f";
  const std::size_t end = output.find_last_not_of(kBlank);
  if (end == std::string::npos) return "";
  const std::size_t newline = output.rfind('\n', end);
  const std::size_t begin = output.find_first_not_of(kBlank, newline == std::string::npos ? 0 : newline + 1);
  return output.substr(begin, end + 1 - begin);
}

std::string withLastLine(std::string message, const std::string& output) {
  const std::string line = lastLine(output);
  if (!line.empty()) message += ": " + line;
  return message;
}

}  // namespace kvm_amf
