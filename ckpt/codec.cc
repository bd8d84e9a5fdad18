#include "kvm_amf/ckpt/codec.h"

#include <limits>
#include <type_traits>

#include "kvm_amf/common/overloaded.h"

namespace kvm_amf::ckpt {
namespace {

constexpr unsigned char kMagic = 0xC7;

// Message types.
enum class Type : unsigned char {
  kOp = 1,
  kApplied = 2,
  kOffer = 3,
  kSnapshotChunk = 4,
  kState = 5,
  kRecord = 6,
  kOpBatch = 7,
};

// Op body tags, in OpBody's order.
constexpr unsigned char kBodyTags = std::variant_size_v<OpBody>;

class Writer {
 public:
  explicit Writer(std::size_t reserve = 64) { out_.reserve(reserve); }
  void byte(unsigned char b) { out_.push_back(static_cast<char>(b)); }
  void u64(std::uint64_t v) {
    while (v >= 0x80) {
      byte(static_cast<unsigned char>(v | 0x80));
      v >>= 7;
    }
    byte(static_cast<unsigned char>(v));
  }
  void i64(std::int64_t v) { u64((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63)); }
  void boolean(bool b) { byte(b ? 1 : 0); }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  void time(TimePoint t) { i64(t.count()); }
  template <typename T, typename F>
  void optional(const std::optional<T>& v, F write) {
    boolean(v.has_value());
    if (v) write(*v);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  void fail(const std::string& why) {
    if (error_.empty()) error_ = why + " at byte " + std::to_string(pos_);
  }
  bool atEnd() const { return pos_ == in_.size(); }

  unsigned char byte(const char* what) {
    if (failed()) return 0;
    if (pos_ >= in_.size()) {
      fail(std::string("truncated: no ") + what);
      return 0;
    }
    return static_cast<unsigned char>(in_[pos_++]);
  }
  std::uint64_t u64(const char* what) {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const unsigned char b = byte(what);
      if (failed()) return 0;
      if (shift == 63 && b > 1) break;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail(std::string("bad number: ") + what);
    return 0;
  }
  std::int64_t i64(const char* what) {
    const std::uint64_t z = u64(what);
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  std::uint32_t u32(const char* what) {
    const std::uint64_t v = u64(what);
    if (v > std::numeric_limits<std::uint32_t>::max()) fail(std::string("out of range: ") + what);
    return static_cast<std::uint32_t>(v);
  }
  int node(const char* what) {
    const std::int64_t v = i64(what);
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
      fail(std::string("out of range: ") + what);
    }
    return static_cast<int>(v);
  }
  bool boolean(const char* what) {
    const unsigned char b = byte(what);
    if (b > 1) fail(std::string("bad flag: ") + what);
    return b == 1;
  }
  std::string str(const char* what) {
    const std::uint64_t n = u64(what);
    if (failed()) return {};
    if (n > in_.size() - pos_) {
      fail(std::string("truncated: ") + what + " of " + std::to_string(n) + " bytes");
      return {};
    }
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  TimePoint time(const char* what) { return TimePoint(i64(what)); }
  template <typename T, typename F>
  std::optional<T> optional(const char* what, F read) {
    if (!boolean(what)) return std::nullopt;
    return read();
  }
  // The count of items that follow, each at least `minBytes` long: more than the bytes left is
  // refused before anything is allocated for them.
  std::uint64_t count(const char* what, std::uint64_t minBytes = 1) {
    const std::uint64_t n = u64(what);
    if (!failed() && n > (in_.size() - pos_) / minBytes) fail(std::string("too many ") + what);
    return failed() ? 0 : n;
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  std::string error_;
};

void header(Writer& w, Type type) {
  w.byte(kMagic);
  w.byte(kCkptCodecVersion);
  w.byte(static_cast<unsigned char>(type));
}

// The type of the bytes, after checking the magic and version.
std::optional<Type> readHeader(Reader& r) {
  if (r.byte("magic") != kMagic) r.fail("not a checkpoint message (bad magic)");
  const unsigned char version = r.byte("version");
  if (!r.failed() && version != kCkptCodecVersion) r.fail("unknown version " + std::to_string(version));
  const unsigned char type = r.byte("type");
  if (r.failed()) return std::nullopt;
  if (type < static_cast<unsigned char>(Type::kOp) || type > static_cast<unsigned char>(Type::kOpBatch)) {
    r.fail("unknown type " + std::to_string(type));
    return std::nullopt;
  }
  return static_cast<Type>(type);
}

void writeAttributes(Writer& w, const CheckpointAttributes& a) {
  w.optional(a.retention, [&](Duration d) { w.i64(d.count()); });
  w.u64(a.maxSections);
  w.u64(a.maxSectionBytes);
  w.u64(a.maxBytes);
}

CheckpointAttributes readAttributes(Reader& r) {
  CheckpointAttributes a;
  a.retention = r.optional<Duration>("retention", [&] { return Duration(r.i64("retention")); });
  a.maxSections = r.u32("maxSections");
  a.maxSectionBytes = r.u64("maxSectionBytes");
  a.maxBytes = r.u64("maxBytes");
  return a;
}

void writeOptionalTime(Writer& w, const std::optional<TimePoint>& t) {
  w.optional(t, [&](TimePoint v) { w.time(v); });
}

std::optional<TimePoint> readOptionalTime(Reader& r, const char* what) {
  return r.optional<TimePoint>(what, [&] { return r.time(what); });
}

void writeBody(Writer& w, const OpBody& body) {
  w.byte(static_cast<unsigned char>(body.index()));
  std::visit(Overloaded{
                 [&](const CreateCheckpoint& b) {
                   w.str(b.name);
                   writeAttributes(w, b.attributes);
                 },
                 [&](const OpenCheckpoint& b) {
                   w.str(b.name);
                   w.str(b.client);
                   w.optional(b.create, [&](const CheckpointAttributes& a) { writeAttributes(w, a); });
                 },
                 [&](const CloseCheckpoint& b) {
                   w.str(b.name);
                   w.str(b.client);
                 },
                 [&](const UnlinkCheckpoint& b) { w.str(b.name); },
                 [&](const CreateSection& b) {
                   w.str(b.name);
                   w.str(b.section);
                   w.str(b.data);
                   writeOptionalTime(w, b.expiry);
                 },
                 [&](const WriteSection& b) {
                   w.str(b.name);
                   w.str(b.section);
                   w.u64(b.offset);
                   w.str(b.data);
                 },
                 [&](const OverwriteSection& b) {
                   w.str(b.name);
                   w.str(b.section);
                   w.str(b.data);
                   w.boolean(b.createSection);
                   w.optional(b.createCheckpoint, [&](const CheckpointAttributes& a) { writeAttributes(w, a); });
                   writeOptionalTime(w, b.expiry);
                 },
                 [&](const DeleteSection& b) {
                   w.str(b.name);
                   w.str(b.section);
                 },
                 [&](const SetSectionExpiry& b) {
                   w.str(b.name);
                   w.str(b.section);
                   writeOptionalTime(w, b.expiry);
                 },
                 [&](const CloseOpeners& b) {
                   w.u64(b.sessions.size());
                   for (const auto& [node, session] : b.sessions) {
                     w.i64(node);
                     w.u64(session);
                   }
                 },
                 [&](const Expire&) {},
             },
             body);
}

OpBody readBody(Reader& r) {
  const unsigned char tag = r.byte("op kind");
  if (r.failed()) return Expire{};
  switch (tag) {
    case 0: {
      CreateCheckpoint b;
      b.name = r.str("name");
      b.attributes = readAttributes(r);
      return b;
    }
    case 1: {
      OpenCheckpoint b;
      b.name = r.str("name");
      b.client = r.str("client");
      b.create = r.optional<CheckpointAttributes>("create", [&] { return readAttributes(r); });
      return b;
    }
    case 2: {
      CloseCheckpoint b;
      b.name = r.str("name");
      b.client = r.str("client");
      return b;
    }
    case 3:
      return UnlinkCheckpoint{r.str("name")};
    case 4: {
      CreateSection b;
      b.name = r.str("name");
      b.section = r.str("section");
      b.data = r.str("data");
      b.expiry = readOptionalTime(r, "expiry");
      return b;
    }
    case 5: {
      WriteSection b;
      b.name = r.str("name");
      b.section = r.str("section");
      b.offset = r.u64("offset");
      b.data = r.str("data");
      return b;
    }
    case 6: {
      OverwriteSection b;
      b.name = r.str("name");
      b.section = r.str("section");
      b.data = r.str("data");
      b.createSection = r.boolean("createSection");
      b.createCheckpoint = r.optional<CheckpointAttributes>("createCheckpoint", [&] { return readAttributes(r); });
      b.expiry = readOptionalTime(r, "expiry");
      return b;
    }
    case 7: {
      DeleteSection b;
      b.name = r.str("name");
      b.section = r.str("section");
      return b;
    }
    case 8: {
      SetSectionExpiry b;
      b.name = r.str("name");
      b.section = r.str("section");
      b.expiry = readOptionalTime(r, "expiry");
      return b;
    }
    case 9: {
      CloseOpeners b;
      const std::uint64_t n = r.count("sessions", 2);
      for (std::uint64_t i = 0; i < n && !r.failed(); ++i) {
        const int node = r.node("node");
        b.sessions.emplace_back(node, r.u64("session"));
      }
      return b;
    }
    case 10:
      return Expire{};
    default:
      static_assert(kBodyTags == 11, "every op kind has a tag here");
      r.fail("unknown op kind " + std::to_string(tag));
      return Expire{};
  }
}

void writeOp(Writer& w, const Op& op) {
  w.i64(op.node);
  w.u64(op.session);
  w.u64(op.counter);
  w.time(op.at);
  w.boolean(op.sync);
  writeBody(w, op.body);
}

Op readOp(Reader& r) {
  Op op;
  op.node = r.node("node");
  op.session = r.u64("session");
  op.counter = r.u64("counter");
  op.at = r.time("at");
  op.sync = r.boolean("sync");
  op.body = readBody(r);
  return op;
}

void writeState(Writer& w, const StoreState& s) {
  w.u64(s.epoch);
  w.u64(s.seq);
  w.time(s.streamTime);
  w.u64(s.origins.size());
  for (const auto& [node, mark] : s.origins) {
    w.i64(node);
    w.u64(mark.session);
    w.u64(mark.counter);
  }
  w.u64(s.checkpoints.size());
  for (const auto& [name, c] : s.checkpoints) {
    w.str(name);
    writeAttributes(w, c.attributes);
    w.time(c.created);
    w.time(c.lastClosed);
    w.u64(c.openers.size());
    for (const Opener& o : c.openers) {
      w.i64(o.node);
      w.u64(o.session);
      w.str(o.client);
    }
    w.u64(c.sections.size());
    for (const auto& [id, section] : c.sections) {
      w.str(id);
      w.str(section.data);
      writeOptionalTime(w, section.expiry);
      w.time(section.updated);
    }
  }
}

StoreState readState(Reader& r) {
  StoreState s;
  s.epoch = r.u64("epoch");
  s.seq = r.u64("seq");
  s.streamTime = r.time("streamTime");
  const std::uint64_t origins = r.count("origins", 3);
  for (std::uint64_t i = 0; i < origins && !r.failed(); ++i) {
    const int node = r.node("origin node");
    OriginMark mark;
    mark.session = r.u64("origin session");
    mark.counter = r.u64("origin counter");
    if (!s.origins.emplace(node, mark).second) r.fail("origin " + std::to_string(node) + " twice");
  }
  const std::uint64_t checkpoints = r.count("checkpoints", 8);
  for (std::uint64_t i = 0; i < checkpoints && !r.failed(); ++i) {
    std::string name = r.str("checkpoint name");
    Checkpoint c;
    c.attributes = readAttributes(r);
    c.created = r.time("created");
    c.lastClosed = r.time("lastClosed");
    const std::uint64_t openers = r.count("openers", 3);
    for (std::uint64_t j = 0; j < openers && !r.failed(); ++j) {
      Opener o;
      o.node = r.node("opener node");
      o.session = r.u64("opener session");
      o.client = r.str("opener client");
      c.openers.insert(std::move(o));
    }
    const std::uint64_t sections = r.count("sections", 4);
    for (std::uint64_t j = 0; j < sections && !r.failed(); ++j) {
      std::string id = r.str("section id");
      Section section;
      section.data = r.str("section data");
      section.expiry = readOptionalTime(r, "section expiry");
      section.updated = r.time("section updated");
      c.bytes += section.data.size();
      if (!c.sections.emplace(std::move(id), std::move(section)).second) r.fail("a section twice");
    }
    if (!s.checkpoints.emplace(std::move(name), std::move(c)).second) r.fail("a checkpoint twice");
  }
  return s;
}

template <typename T>
Result<T> finish(Reader& r, T value) {
  if (!r.failed() && !r.atEnd()) r.fail("trailing bytes");
  if (r.failed()) return Error{r.error()};
  return value;
}

}  // namespace

std::string encode(const Message& message) {
  std::size_t reserve = 64;
  if (const Op* op = std::get_if<Op>(&message)) reserve += opDataBytes(op->body);
  if (const OpBatch* batch = std::get_if<OpBatch>(&message)) {
    for (const Op& op : batch->ops) reserve += 48 + opDataBytes(op.body);
  }
  Writer w(reserve);
  std::visit(Overloaded{
                 [&](const Op& op) {
                   header(w, Type::kOp);
                   writeOp(w, op);
                 },
                 [&](const AppliedMessage& m) {
                   header(w, Type::kApplied);
                   w.i64(m.node);
                   w.u64(m.session);
                   w.u64(m.epoch);
                   w.u64(m.upTo);
                 },
                 [&](const OfferMessage& m) {
                   header(w, Type::kOffer);
                   w.i64(m.node);
                   w.u64(m.session);
                   w.u64(m.round);
                   w.boolean(m.hasState);
                   w.u64(m.epoch);
                   w.u64(m.seq);
                 },
                 [&](const OpBatch& m) {
                   header(w, Type::kOpBatch);
                   w.u64(m.ops.size());
                   for (const Op& op : m.ops) writeOp(w, op);
                 },
                 [&](const SnapshotChunk& m) {
                   header(w, Type::kSnapshotChunk);
                   w.i64(m.node);
                   w.u64(m.round);
                   w.u64(m.index);
                   w.boolean(m.last);
                   w.str(m.bytes);
                 },
             },
             message);
  return w.take();
}

namespace {

Message readMessage(Reader& r, Type type) {
  switch (type) {
    case Type::kOp:
      return readOp(r);
    case Type::kApplied: {
      AppliedMessage m;
      m.node = r.node("node");
      m.session = r.u64("session");
      m.epoch = r.u64("epoch");
      m.upTo = r.u64("upTo");
      return m;
    }
    case Type::kOffer: {
      OfferMessage m;
      m.node = r.node("node");
      m.session = r.u64("session");
      m.round = r.u64("round");
      m.hasState = r.boolean("hasState");
      m.epoch = r.u64("epoch");
      m.seq = r.u64("seq");
      return m;
    }
    case Type::kOpBatch: {
      OpBatch m;
      const std::uint64_t n = r.count("ops", 8);
      m.ops.reserve(n);
      for (std::uint64_t i = 0; i < n && !r.failed(); ++i) m.ops.push_back(readOp(r));
      return m;
    }
    case Type::kSnapshotChunk: {
      SnapshotChunk m;
      m.node = r.node("node");
      m.round = r.u64("round");
      m.index = r.u32("index");
      m.last = r.boolean("last");
      m.bytes = r.str("bytes");
      return m;
    }
    default:
      r.fail("not a group message (type " + std::to_string(static_cast<int>(type)) + ")");
      return AppliedMessage{};
  }
}

}  // namespace

// GCC 12 warns, wrongly, that moving the decoded variant into the Result reads members of an
// alternative that is not the active one.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
Result<Message> decode(std::string_view bytes) {
  Reader r(bytes);
  const std::optional<Type> type = readHeader(r);
  if (!type) return Error{r.error()};
  Message message = readMessage(r, *type);
  if (!r.failed() && !r.atEnd()) r.fail("trailing bytes");
  if (r.failed()) return Error{r.error()};
  return message;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

std::string encodeState(const StoreState& state) {
  Writer w(1024);
  header(w, Type::kState);
  writeState(w, state);
  return w.take();
}

Result<StoreState> decodeState(std::string_view bytes) {
  Reader r(bytes);
  const std::optional<Type> type = readHeader(r);
  if (!type) return Error{r.error()};
  if (*type != Type::kState) return Error{"not a checkpoint state"};
  Result<StoreState> state = finish(r, readState(r));
  if (!state.ok()) return state;
  if (auto why = inconsistency(state.value())) return Error{"inconsistent state: " + *why};
  return state;
}

std::string encodeRecord(const LogRecord& record) {
  Writer w(64 + opDataBytes(record.op.body));
  header(w, Type::kRecord);
  w.u64(record.seq);
  writeOp(w, record.op);
  return w.take();
}

std::string recordFromMessage(std::uint64_t seq, std::string_view opMessage) {
  constexpr std::size_t kHeader = 3;  // magic, version, type: the op's fields follow
  Writer w(opMessage.size() + 16);
  header(w, Type::kRecord);
  w.u64(seq);
  std::string record = w.take();
  record.append(opMessage.substr(kHeader));
  return record;
}

Result<LogRecord> decodeRecord(std::string_view bytes) {
  Reader r(bytes);
  const std::optional<Type> type = readHeader(r);
  if (!type) return Error{r.error()};
  if (*type != Type::kRecord) return Error{"not a log record"};
  LogRecord record;
  record.seq = r.u64("seq");
  record.op = readOp(r);
  return finish(r, std::move(record));
}

}  // namespace kvm_amf::ckpt
