// Running an operator's command (the fence agent, event notifications): `/bin/sh -c COMMAND` as a
// child in a process group of its own, and the line of its output worth a log message.
#pragma once

#include <sys/types.h>

#include <string>

namespace kvm_amf {

// Starts `/bin/sh -c command` in a new process group (killpg(pid, ...) reaches all it started),
// with no signal blocked and default dispositions whatever the daemon set for itself; standard
// input from `inFd` (-1: /dev/null), standard output and error into `outFd`; the environment
// `envp` (nullptr: this process's). Returns the pid, or an errno value as a negative number. The
// caller reaps the child.
pid_t spawnShell(const std::string& command, int inFd, int outFd, char* const* envp = nullptr);

// The last line of `output` with anything but blanks in it, without surrounding blanks; "" if none.
std::string lastLine(const std::string& output);
// `message`, then ": " and the last line of `output` when it has one.
std::string withLastLine(std::string message, const std::string& output);

}  // namespace kvm_amf
