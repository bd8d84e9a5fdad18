#include "kvm_amf/ckpt/disk_checkpoint_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kvm_amf/ckpt/codec.h"
#include "kvm_amf/common/durable_file.h"

namespace kvm_amf::ckpt {
namespace {

constexpr std::string_view kSnapshotMagic = "KVMCKPTS";
constexpr std::string_view kLogMagic = "KVMCKPTL";
constexpr std::uint32_t kLogVersion = 1;
// A record longer than this is damage, not data: an op carries at most one section (1 MiB by
// default) and its names.
constexpr std::uint32_t kMaxRecordBytes = 64u << 20;

std::string errnoText(int error) { return std::strerror(error); }

void putU32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void putU64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint32_t getU32(std::string_view in, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}
std::uint64_t getU64(std::string_view in, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

Status writeAll(int fd, std::string_view bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{path + ": write: " + errnoText(errno)};
    done += static_cast<std::size_t>(n);
  }
  return Status::success();
}

Status syncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error{dir + ": open: " + errnoText(errno)};
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return Error{dir + ": fsync: " + errnoText(error)};
  return Status::success();
}

Result<std::optional<std::string>> readWholeFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return Error{path + ": cannot be read: " + errnoText(errno)};
  }
  std::string bytes;
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return Error{path + ": cannot be read: " + errnoText(error)};
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return std::optional<std::string>(std::move(bytes));
}

}  // namespace

std::string DiskCheckpointLog::logHeader(std::uint64_t epoch, std::uint64_t baseSeq) {
  std::string header(kLogMagic);
  putU32(header, kLogVersion);
  putU64(header, epoch);
  putU64(header, baseSeq);
  putU32(header, crc32c(header));
  return header;
}

std::string DiskCheckpointLog::frameRecord(const std::string& payload) {
  std::string framed;
  framed.reserve(payload.size() + 8);
  putU32(framed, static_cast<std::uint32_t>(payload.size()));
  putU32(framed, crc32c(payload));
  framed += payload;
  return framed;
}

Status DiskCheckpointLog::Files::write(Job& job) {
  return job.isSnapshot ? writeSnapshot(job) : appendRecords(job.records);
}

Status DiskCheckpointLog::Files::appendRecords(const std::vector<std::string>& records) {
  const std::string path = dir + "/log";
  if (fd < 0) return Error{path + ": not open for appending: a snapshot must replace it after the last failure"};
  std::string bytes;
  for (const auto& record : records) bytes += record;
  Status status = writeAll(fd, bytes, path);
  if (status.ok() && ::fdatasync(fd) != 0) status = Error{path + ": fdatasync: " + errnoText(errno)};
  if (!status.ok()) {
    // Cut the log back to its last whole record, and append no more to it: a snapshot starts a
    // new one.
    if (::ftruncate(fd, static_cast<off_t>(size)) == 0) (void)::fdatasync(fd);
    close();
    return status;
  }
  ++syncs;
  size += bytes.size();
  return Status::success();
}

Status DiskCheckpointLog::Files::writeSnapshot(const Job& job) {
  const std::string snapshotPath = dir + "/snapshot";
  const std::string logPath = dir + "/log";
  const std::string newLogPath = dir + "/log.new";
  if (Status s = writeDurableFile(snapshotPath, kSnapshotMagic, job.state); !s.ok()) return s;
  int next = ::open(newLogPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (next < 0) return Error{newLogPath + ": create: " + errnoText(errno)};
  const std::string header = logHeader(job.epoch, job.seq);
  Status status = writeAll(next, header, newLogPath);
  if (status.ok() && ::fsync(next) != 0) status = Error{newLogPath + ": fsync: " + errnoText(errno)};
  if (status.ok() && ::rename(newLogPath.c_str(), logPath.c_str()) != 0) {
    status = Error{logPath + ": rename: " + errnoText(errno)};
  }
  if (status.ok()) status = syncDirectory(dir);
  if (!status.ok()) {
    ::close(next);
    ::unlink(newLogPath.c_str());
    return status;
  }
  close();
  // Appends go to the new log; O_APPEND from here on.
  if (::fcntl(next, F_SETFL, O_APPEND) != 0) {
    ::close(next);
    return Error{logPath + ": fcntl: " + errnoText(errno)};
  }
  fd = next;
  size = header.size();
  return Status::success();
}

void DiskCheckpointLog::Files::close() {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

DiskCheckpointLog::DiskCheckpointLog(EventLoop& loop, std::string dir)
    : dir_(std::move(dir)),
      worker_(std::make_unique<Worker>(loop)),
      files_(std::make_shared<Files>()),
      free_(std::make_shared<std::atomic<std::uint64_t>>(0)),
      freeKnown_(std::make_shared<std::atomic<bool>>(false)) {
  files_->dir = dir_;
  worker_->run([dir = dir_, free = free_, known = freeKnown_] {
    struct statvfs fs {};
    if (::statvfs(dir.c_str(), &fs) == 0) {
      free->store(static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize);
      known->store(true);
    }
  });
}

DiskCheckpointLog::~DiskCheckpointLog() {
  *alive_ = false;
  // The job being written finishes; those still queued are written here, in order.
  worker_.reset();
  for (Job& job : queue_.takeAll()) {
    Status status = files_->write(job);
    (void)status;  // nobody is left to tell; a failure is found when the files are loaded
  }
  files_->close();
}

void DiskCheckpointLog::append(std::vector<std::string> records, Durable durable) {
  for (auto& record : records) {
    record = frameRecord(record);
    logBytes_ += record.size();
  }
  queue_.append(std::move(records), std::move(durable));
  if (!writing_) startNext();
}

void DiskCheckpointLog::snapshot(std::string state, std::uint64_t epoch, std::uint64_t seq, Durable durable) {
  logBytes_ = 0;
  queue_.snapshot(std::move(state), epoch, seq, std::move(durable));
  if (!writing_) startNext();
}

std::optional<std::uint64_t> DiskCheckpointLog::freeBytes() const {
  if (!freeKnown_->load()) return std::nullopt;
  return free_->load();
}

void DiskCheckpointLog::startNext() {
  if (queue_.empty()) return;
  writing_ = true;
  auto job = std::make_shared<Job>(queue_.pop());
  auto status = std::make_shared<Status>();
  auto syncs = std::make_shared<std::uint64_t>(0);
  worker_->run(
      [files = files_, job, status, syncs, free = free_, known = freeKnown_] {
        *status = files->write(*job);
        *syncs = files->syncs;
        struct statvfs fs {};
        if (::statvfs(files->dir.c_str(), &fs) == 0) {
          free->store(static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize);
          known->store(true);
        }
      },
      [this, job, status, syncs, alive = alive_] {
        if (!*alive) return;
        writing_ = false;
        ++writes_;
        if (!status->ok()) ++failures_;
        syncs_ = *syncs;
        // Callbacks may destroy this log: take what is needed first.
        std::weak_ptr<bool> still(alive);
        for (auto& done : job->done) {
          done(*status);
          if (still.expired()) return;
        }
        if (!writing_) startNext();
      });
}

Result<std::optional<CheckpointStore>> DiskCheckpointLog::load(const std::string& dir, const StoreLimits& limits,
                                                               std::string* warning) {
  const std::string snapshotPath = dir + "/snapshot";
  const std::string logPath = dir + "/log";
  Result<std::optional<std::string>> snapshot = readDurableFile(snapshotPath, kSnapshotMagic);
  if (!snapshot.ok()) return snapshot.error();
  Result<std::optional<std::string>> logBytes = readWholeFile(logPath);
  if (!logBytes.ok()) return logBytes.error();

  std::optional<LogImage> log;
  if (logBytes.value()) {
    const std::string& bytes = *logBytes.value();
    if (bytes.size() < kLogHeaderBytes) return Error{logPath + ": the header is cut short"};
    const std::string_view header(bytes.data(), kLogHeaderBytes);
    if (header.substr(0, kLogMagic.size()) != kLogMagic) return Error{logPath + ": not a checkpoint log (bad magic)"};
    if (getU32(header, 28) != crc32c(header.substr(0, 28)))
      return Error{logPath + ": the header's checksum does not match"};
    if (getU32(header, 8) != kLogVersion) {
      return Error{logPath + ": unknown format version " + std::to_string(getU32(header, 8))};
    }
    log = LogImage{getU64(header, 12), getU64(header, 20), {}};
    std::size_t at = kLogHeaderBytes;
    while (at < bytes.size()) {
      const std::size_t left = bytes.size() - at;
      const std::uint32_t length = left >= 4 ? getU32(bytes, at) : 0;
      if (left >= 8 && (length == 0 || length > kMaxRecordBytes)) {
        return Error{logPath + ": record " + std::to_string(log->records.size() + 1) + " at byte " +
                     std::to_string(at) + " has an impossible length " + std::to_string(length)};
      }
      if (left < 8 || length > left - 8) {
        // The host stopped while writing this record: it was never synced, nor acknowledged.
        if (warning) {
          *warning = logPath + ": dropped a record cut short at byte " + std::to_string(at) + " (" +
                     std::to_string(left) + " bytes; written when the host stopped)";
        }
        int fd = ::open(logPath.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(at)) != 0 || ::fsync(fd) != 0) {
          const int error = errno;
          if (fd >= 0) ::close(fd);
          return Error{logPath + ": cannot cut the partial record off: " + errnoText(error)};
        }
        ::close(fd);
        break;
      }
      const std::string_view payload(bytes.data() + at + 8, length);
      if (getU32(bytes, at + 4) != crc32c(payload)) {
        return Error{logPath + ": record " + std::to_string(log->records.size() + 1) + " at byte " +
                     std::to_string(at) + ": checksum mismatch"};
      }
      log->records.emplace_back(payload);
      at += 8 + length;
    }
  }
  Result<std::optional<CheckpointStore>> store = restoreStore(limits, snapshot.value(), log);
  if (!store.ok()) return Error{dir + ": " + store.error().message};
  return store;
}

}  // namespace kvm_amf::ckpt
