// A test double of a host's hypervisor whose VMs outlive the node manager, as libvirt's do: a VM
// is a file in a directory (written when it starts, removed when it stops). A node manager that is
// killed and restarted finds its VMs still "running"; a fence that powers the host off removes the
// directory. Guest assignments are acknowledged at once. For amf-testnode only.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvm_amf/common/scheduler.h"
#include "kvm_amf/vmm/guest_channel.h"
#include "kvm_amf/vmm/hypervisor.h"

namespace kvm_amf::testing {

class FileHost : public vmm::Hypervisor, public vmm::GuestChannel {
 public:
  using Observer = std::function<void(const std::string& vm, bool running)>;

  FileHost(std::string dir, Scheduler& scheduler, Duration vmStart, Observer observer)
      : dir_(std::move(dir)), scheduler_(scheduler), vmStart_(vmStart), observer_(std::move(observer)) {
    ::mkdir(dir_.c_str(), 0755);
  }
  ~FileHost() override { *alive_ = false; }

  void setListener(vmm::HypervisorListener*) override {}
  void start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>&, vmm::Done done) override {
    later(vmStart_, [this, vm = spec.name, done = std::move(done)] {
      ::mkdir(dir_.c_str(), 0755);
      ::unlink((path(vm) + ".saved").c_str());  // a fresh start discards a managed save
      std::ofstream(path(vm)) << scheduler_.now().count() << "\n";
      observer_(vm, true);
      done(Status::success());
    });
  }
  void destroy(const std::string& vm, vmm::Done done) override {
    later(Duration(100), [this, vm, done = std::move(done)] {
      if (::unlink(path(vm).c_str()) == 0) observer_(vm, false);
      ::unlink((path(vm) + ".saved").c_str());
      done(Status::success());
    });
  }
  void listRunning(std::function<void(Result<std::vector<std::string>>)> done) override {
    later(Duration(0), [this, done = std::move(done)] {
      std::vector<std::string> names;
      if (DIR* d = ::opendir(dir_.c_str())) {
        while (dirent* entry = ::readdir(d)) {
          const std::string name = entry->d_name;
          if (name[0] != '.' && !name.ends_with(".saved")) names.push_back(name);
        }
        ::closedir(d);
      }
      done(names);
    });
  }

  // The VM operations: a shutdown or suspend stops the VM as destroy does (a suspended VM's file is
  // kept aside and put back by restore); pause, resume, reboot and reset change nothing here.
  void shutdown(const std::string& vm, Duration, vmm::Done done) override { destroy(vm, std::move(done)); }
  void pause(const std::string&, vmm::Done done) override { succeedLater(std::move(done)); }
  void resume(const std::string&, vmm::Done done) override { succeedLater(std::move(done)); }
  void suspend(const std::string& vm, Duration, vmm::Done done) override {
    later(Duration(100), [this, vm, done = std::move(done)] {
      if (::rename(path(vm).c_str(), (path(vm) + ".saved").c_str()) == 0) observer_(vm, false);
      done(Status::success());
    });
  }
  void restore(const std::string& vm, Duration, vmm::Done done) override {
    later(vmStart_, [this, vm, done = std::move(done)] {
      if (::rename((path(vm) + ".saved").c_str(), path(vm).c_str()) != 0) {
        done(Error{"restore of " + vm + ": it has no managed save image"});
        return;
      }
      observer_(vm, true);
      done(Status::success());
    });
  }
  void reboot(const std::string&, Duration, vmm::Done done) override { succeedLater(std::move(done)); }
  void reset(const std::string&, vmm::Done done) override { succeedLater(std::move(done)); }

  void setListener(vmm::GuestListener*) override {}
  void watch(const std::string&, const model::HeartbeatSpec&) override {}
  void unwatch(const std::string&) override {}
  void assign(const std::string&, const std::string&, model::HaState, const std::map<std::string, std::string>&,
              vmm::Done done) override {
    later(Duration(5), [done = std::move(done)] { done(Status::success()); });
  }
  void unassign(const std::string&, const std::string&, vmm::Done done) override {
    later(Duration(5), [done = std::move(done)] { done(Status::success()); });
  }

 private:
  std::string path(const std::string& vm) const { return dir_ + "/" + vm; }
  void succeedLater(vmm::Done done) {
    later(Duration(5), [done = std::move(done)] { done(Status::success()); });
  }
  void later(Duration delay, std::function<void()> fn) {
    scheduler_.after(delay, [alive = alive_, fn = std::move(fn)] {
      if (*alive) fn();
    });
  }

  std::string dir_;
  Scheduler& scheduler_;
  Duration vmStart_;
  Observer observer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kvm_amf::testing
