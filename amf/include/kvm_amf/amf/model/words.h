// The words the configuration and the CLI use for the model's enumerations, in one table each.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/amf/model/states.h"

namespace kvm_amf::model {

template <typename E>
using WordTable = std::span<const std::pair<E, std::string_view>>;

// One table per enumeration, every value with its word; the argument only selects the table.
WordTable<FencingMode> enumWords(FencingMode);
WordTable<Firmware> enumWords(Firmware);
WordTable<RealtimePolicy> enumWords(RealtimePolicy);
WordTable<DiskFormat> enumWords(DiskFormat);
WordTable<DiskBus> enumWords(DiskBus);
WordTable<DiskCache> enumWords(DiskCache);
WordTable<ConsoleType> enumWords(ConsoleType);
WordTable<RedundancyModel> enumWords(RedundancyModel);
WordTable<RecoveryAction> enumWords(RecoveryAction);
WordTable<WatchdogModel> enumWords(WatchdogModel);
WordTable<WatchdogAction> enumWords(WatchdogAction);
WordTable<HaState> enumWords(HaState);
WordTable<AdminState> enumWords(AdminState);
WordTable<OperState> enumWords(OperState);
WordTable<PresenceState> enumWords(PresenceState);
WordTable<ReadinessState> enumWords(ReadinessState);

template <typename E>
std::string_view toWord(E value) {
  for (const auto& [v, word] : enumWords(E{})) {
    if (v == value) return word;
  }
  return "?";
}

template <typename E>
std::optional<E> fromWord(std::string_view word) {
  for (const auto& [v, w] : enumWords(E{})) {
    if (w == word) return v;
  }
  return std::nullopt;
}

// "a, b or c": the accepted words, for error messages.
template <typename E>
std::string wordList() {
  std::string out;
  const auto words = enumWords(E{});
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += (i + 1 == words.size()) ? " or " : ", ";
    out += words[i].second;
  }
  return out;
}

}  // namespace kvm_amf::model
