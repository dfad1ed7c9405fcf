// ensemble.h (core): the "ensemble" model format. An ensemble folder holds
// only a card.json:
//
//   {"format":"ensemble",
//    "members":[{"model": PATH relative to the folder, "weight", "shift", "scale", "hash"}, ...]}
//
// and its energy is the product of experts
//
//   E(x) = sum_i w_i * (E_i(x) - shift_i) / scale_i          x[B,C,H,W] -> [B]
//
// (SumEnergy of AffineEnergy terms, compose.h). Fitting the shifts and scales
// needs data and lives in ood/ensemble.h; loading needs neither, so it is
// part of the core model registry (models.h).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ebm/core/energy.h"

namespace ebm {

/// Build the energy of an ensemble folder from its card. Throws DataError when
/// the card is malformed, a member is missing, or a member's SHA-256 differs
/// from the one recorded at fit time (its standardisation would be stale).
EnergyPtr load_ensemble(const std::string& dir, const nlohmann::json& card);

}  // namespace ebm
