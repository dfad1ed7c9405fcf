// card_entry.h: reading the settings a model card carries for a command,
// e.g. a card's "sampler" (ebm sample), "purify" (ebm defend) or "compose"
// (ebm compose) entry. One rule for all of them: a key the caller set
// explicitly wins over the card, and a value of the wrong JSON type or one
// the options struct refuses is a DataError naming the entry and the key.
#pragma once

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <utility>

#include "ebm/core/common.h"
#include "ebm/core/langevin.h"

namespace ebm {

class CardEntry {
 public:
  /// The object card[name]; absent = nothing to take. DataError when it is
  /// not an object. `given` names keys the caller set (they stay).
  CardEntry(const nlohmann::json& card, std::string name, std::set<std::string> given = {})
      : name_(std::move(name)), given_(std::move(given)) {
    if (!card.contains(name_)) return;
    entry_ = card[name_];
    if (!entry_.is_object()) throw DataError("model card: \"" + name_ + "\" must be an object");
  }

  /// When the entry holds `key` and the caller did not give it, read it as T
  /// and pass it to `set` (which may throw UsageError on a bad value).
  template <class T, class F>
  void take(const char* key, F&& set) {
    if (!entry_.contains(key) || given_.count(key)) return;
    try {
      set(entry_.at(key).get<T>());
    } catch (const nlohmann::json::exception& e) {
      throw DataError("model card: malformed \"" + name_ + "\"." + key + ": " + e.what());
    } catch (const UsageError& e) {
      throw DataError("model card: \"" + name_ + "\"." + key + ": " + e.what());
    }
    applied_.push_back(key);
  }

  /// The keys taken so far, in order (a JSON array of strings).
  const nlohmann::json& applied() const { return applied_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::set<std::string> given_;
  nlohmann::json entry_ = nlohmann::json::object();
  nlohmann::json applied_ = nlohmann::json::array();
};

/// The keys of one Langevin chain, read the same way wherever a card carries
/// one ("sampler", "purify"): steps, step_size, noise, grad_clip and the
/// step_schedule / noise_schedule specs (Schedule::parse). O is any options
/// struct with those setters (LangevinOptions, PurifyOptions).
template <class O>
void take_chain_keys(CardEntry& entry, O& o) {
  entry.take<int64_t>("steps", [&](int64_t v) { o.steps(v); });
  entry.take<double>("step_size", [&](double v) { o.step_size(v); });
  entry.take<double>("noise", [&](double v) { o.noise(v); });
  entry.take<double>("grad_clip", [&](double v) { o.grad_clip(v); });
  entry.take<std::string>("step_schedule", [&](const std::string& v) { o.step_schedule(Schedule::parse(v)); });
  entry.take<std::string>("noise_schedule", [&](const std::string& v) { o.noise_schedule(Schedule::parse(v)); });
}

}  // namespace ebm
