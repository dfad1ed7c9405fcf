#include "ebm/core/fs.h"
#include "ebm/ood/ensemble.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "ebm/io/data.h"
#include "ebm/core/models.h"

namespace ebm {

namespace fs = std::filesystem;

json fit_ensemble(const EnsembleOptions& o, const std::string& out_dir) {
  if (o.members().empty()) throw UsageError("an ensemble needs at least one member model");
  if (!o.weights().empty() && o.weights().size() != o.members().size())
    throw UsageError("got " + std::to_string(o.weights().size()) + " weights for " +
                     std::to_string(o.members().size()) + " members");
  for (double w : o.weights())
    if (!std::isfinite(w)) throw UsageError("ensemble weights must be finite, got " + std::to_string(w));
  if (o.split() != "val" && o.split() != "fit")
    throw UsageError("the ensemble is standardised on the val or fit split, never '" + o.split() + "'");
  if (out_dir.empty()) throw UsageError("the ensemble needs an output folder");

  DatasetOptions dopt;
  dopt.split = o.split();
  dopt.n = o.n();
  dopt.root = o.root();
  const Dataset d = load_dataset(o.data(), dopt);
  if (d.size() < 2) throw DataError("the " + o.split() + " split of '" + o.data() + "' has fewer than 2 images");

  const fs::path base = fs::absolute(out_dir).lexically_normal();
  json members = json::array();
  for (size_t i = 0; i < o.members().size(); ++i) {
    const std::string& path = o.members()[i];
    auto m = load_model(path);
    m->set_training(false);
    const auto e = energy_batched(*m, d.images, o.batch()).to(torch::kFloat64);
    if (!torch::isfinite(e).all().item<bool>())
      throw DivergenceError("member '" + path + "' gives non-finite energies on " + o.data() + "/" + o.split());
    const double mu = e.mean().item<double>(), sd = e.std().item<double>();
    if (!(sd > 0)) throw DataError("member '" + path + "' has constant energy on " + o.data() + "/" + o.split());
    members.push_back({{"model", fs::absolute(path).lexically_normal().lexically_relative(base).string()},
                       {"weight", o.weights().empty() ? 1.0 : o.weights()[i]},
                       {"shift", mu},
                       {"scale", sd},
                       {"hash", model_hash(path)},
                       {"describe", m->describe()}});
  }
  return {{"format", "ensemble"},
          {"ebmkit_version", version()},
          {"members", members},
          {"fit", {{"data", o.data()}, {"split", o.split()}, {"n", d.size()}}}};
}

void save_ensemble(const std::string& out_dir, const json& card) {
  make_dirs(out_dir);
  write_file_atomic(out_dir + "/card.json", card.dump(2) + "\n");
}

}  // namespace ebm
