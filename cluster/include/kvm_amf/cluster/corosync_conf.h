// Corosync's own configuration (corosync.conf, corosync 3 / knet syntax) made from the cluster's
// membership settings, and the shared authkey that knet's crypto uses. Plain input, no dependency
// on the configuration model: the caller (amf-admin corosync-conf) maps the Cluster document.
#pragma once

#include <string>
#include <vector>

#include "kvm_amf/common/result.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::cluster {

struct CorosyncClusterConf {
  struct Node {
    std::string name;
    int id = 0;           // Corosync nodeid, > 0
    std::string address;  // ring0_addr
  };
  std::string clusterName;
  std::vector<Node> nodes;
  Duration token{300};      // totem token timeout; token_coefficient is 0, so this is the effective token
  Duration consensus{0};    // 0: round(1.2 x token), as Corosync derives it
  bool twoNode = false;     // votequorum two_node
  bool waitForAll = false;  // votequorum wait_for_all
  bool crypto = true;       // knet aes256 + sha256 with the key in authkeyPath; false: none/none
  std::string authkeyPath;  // keyfile; used only with crypto
  std::string stateDir;     // system.state_dir; empty: Corosync's default (/var/lib/corosync)
  std::string logFile;      // empty: log to stderr only
};

// The knet link ping timers chosen for a token (see corosync_conf.cc for the rule and why).
struct KnetPingTimers {
  Duration interval;
  Duration timeout;
};
KnetPingTimers knetPingTimers(Duration token);

// Checks that `conf` can be written as corosync.conf: a cluster name, at least one node, positive
// node ids and token, and no value that Corosync's parser would split or misread (a newline, '{',
// '}', surrounding spaces, or an empty name or address). The error names the offending field.
Status checkCorosyncConf(const CorosyncClusterConf& conf);

// corosync.conf text for every host of the cluster (each Corosync finds itself by its address).
// REQUIRES: checkCorosyncConf(conf).ok().
std::string corosyncConf(const CorosyncClusterConf& conf);

// Creates a new authkey at `path`: 256 random bytes from getrandom(), written to a temporary file
// beside it with mode 0400, fsynced, then renamed into place (the directory is fsynced too). Never
// overwrites: an existing `path` is an error naming it, and so is a failure of any step. Blocking
// file I/O: not for an event loop thread.
Status writeAuthkey(const std::string& path);

}  // namespace kvm_amf::cluster
