#include "ebm/core/ensemble.h"

#include <torch/torch.h>

#include <filesystem>

#include "ebm/core/common.h"
#include "ebm/core/compose.h"
#include "ebm/core/models.h"

namespace ebm {

namespace fs = std::filesystem;
using json = nlohmann::json;

EnergyPtr load_ensemble(const std::string& dir, const json& card) {
  if (!card.contains("members") || !card["members"].is_array() || card["members"].empty())
    throw DataError("ensemble '" + dir + "': card.json has no \"members\"");
  std::vector<SumEnergy::Term> terms;
  for (const auto& mj : card["members"]) {
    try {
      for (const char* key : {"model", "weight", "shift", "scale", "hash"})
        if (!mj.contains(key)) throw DataError("ensemble '" + dir + "': a member has no \"" + key + "\"");
      const std::string path = (fs::path(dir) / mj["model"].get<std::string>()).lexically_normal().string();
      const std::string h = model_hash(path);
      if (h != mj["hash"].get<std::string>())
        throw DataError("ensemble '" + dir + "': member '" + path + "' changed since the ensemble was fitted (hash " + h +
                        ", fitted " + mj["hash"].get<std::string>() + "); refit it with `ebm ood ensemble`");
      auto m = load_model(path);
      m->set_training(false);
      terms.push_back({mj["weight"].get<double>(),
                       std::make_shared<AffineEnergy>(m, mj["shift"].get<double>(), mj["scale"].get<double>())});
    } catch (const json::exception& e) {  // a field of the wrong type
      throw DataError("ensemble '" + dir + "': malformed member " + mj.dump().substr(0, 120) + ": " + e.what());
    }
  }
  return std::make_shared<SumEnergy>(std::move(terms));
}

}  // namespace ebm
