// augment.cpp: the training batch pipeline (augment.h).
#include "ebm/train/augment.h"

#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/core/models.h"
#include "ebm/defend/attacks.h"

namespace ebm {

namespace {

// Translate each image by (dy, dx) in [-k, k]^2, filling with zeros.
torch::Tensor random_shift(const torch::Tensor& x, int64_t k, at::Generator& gen) {
  const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
  auto padded = torch::constant_pad_nd(x, {k, k, k, k}, 0.0);
  auto off = torch::randint(0, 2 * k + 1, {b, 2}, gen, torch::kInt64);
  auto out = torch::empty_like(x);
  auto a = off.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) out[i].copy_(padded[i].narrow(1, a[i][0], h).narrow(2, a[i][1], w));
  return out;
}

// PGD examples for a random share of a batch: each row of x [B,C,H,W] (labels
// y [B]) is picked with probability `fraction` and attacked by L-inf PGD
// (random start, step 2.5*eps/steps) against the model being trained, which is
// in eval mode for the attack and back in training mode after. Returns the
// picked row indices [R] and their adversarial images [R,C,H,W], detached.
struct AttackedRows {
  torch::Tensor rows, x;
};
AttackedRows attack_share(Energy& model, const torch::Tensor& x, const torch::Tensor& y, double fraction, double eps,
                          int64_t steps, uint64_t seed, at::Generator& gen) {
  AttackedRows a;
  a.rows = (torch::rand({x.size(0)}, gen) < fraction).nonzero().flatten();
  if (a.rows.numel() == 0) return a;
  auto am = classifier_model(model);
  auto po = PgdOptions().eps(eps).steps(steps).step_size(2.5 * eps / double(steps)).seed(seed);
  a.x = pgd(am, x.index_select(0, a.rows), y.index_select(0, a.rows), po).detach();
  model.set_training(true);
  return a;
}

}  // namespace

Augmentation::Augmentation(const TrainOptions& o) : o_(o) {
  if (!o.purify_augment().empty()) {
    // The purifier's own card settings, frozen, one draw per image.
    purifier_ = load_model(o.purify_augment());
    purifier_->set_training(false);
    purify_ = purify_options_from_card(load_card(o.purify_augment())).draws(1);
    check_purify_options(purify_);
  }
}

torch::Tensor Augmentation::apply(Energy& model, const torch::Tensor& x_in, const torch::Tensor& y, int64_t step,
                                  at::Generator& gen) const {
  auto x = x_in;
  if (o_.augment_shift() > 0) x = random_shift(x, o_.augment_shift(), gen);
  const auto clean = x;
  if (o_.data_noise() > 0) x = x + o_.data_noise() * torch::randn(x.sizes(), gen);
  if (o_.noise_augment() > 0) {
    const auto sd = o_.noise_augment() * torch::rand({x.size(0), 1, 1, 1}, gen);
    x = (x + sd * torch::randn(x.sizes(), gen)).clamp(0, 1);
  }
  if (!o_.noise_augment_sigmas().empty()) {
    // Level L (one past the list) is "clean": sigma 0.
    auto levels = o_.noise_augment_sigmas();
    levels.push_back(0.0);
    const auto idx = torch::randint(int64_t(levels.size()), {x.size(0)}, gen, torch::kInt64);
    const auto sd = torch::tensor(levels, torch::kFloat64).to(x.scalar_type()).index_select(0, idx).view({-1, 1, 1, 1});
    x = x + sd * torch::randn(x.sizes(), gen);
  }
  if (o_.adv_eps() > 0) {
    // Madry adversarial training on a share of the batch (clean images in, PGD out).
    const auto a = attack_share(model, clean, y, o_.adv_fraction(), o_.adv_eps(), o_.adv_steps(),
                                o_.seed() * 1000033ULL + uint64_t(step), gen);
    if (a.rows.numel() > 0) x = x.index_copy(0, a.rows, a.x);
  }
  if (purifier_) {
    const auto rows = (torch::rand({x.size(0)}, gen) < o_.purify_fraction()).nonzero().flatten();
    if (rows.numel() > 0) {
      auto src = clean.index_select(0, rows);
      if (o_.purify_attack_eps() > 0) {
        // Grey-box PGD against the current classifier on a share of the rows about to be purified.
        const auto a = attack_share(model, src, y.index_select(0, rows), o_.purify_attack_fraction(),
                                    o_.purify_attack_eps(), o_.purify_attack_steps(),
                                    o_.seed() * 1000003ULL + uint64_t(step), gen);
        if (a.rows.numel() > 0) src = src.index_copy(0, a.rows, a.x);
      }
      x = x.index_copy(0, rows, purify(*purifier_, src, purify_, gen).detach());
    }
  }
  return x;
}

void Augmentation::card_options(nlohmann::json& opts) const {
  if (purifier_)
    opts.update({{"purify_augment", o_.purify_augment()}, {"purify_fraction", o_.purify_fraction()},
                 {"purify", purify_options_json(purify_)}, {"purify_steps", purify_.steps()}});
  if (o_.adv_eps() > 0)
    opts.update({{"adv_eps", o_.adv_eps()}, {"adv_fraction", o_.adv_fraction()}, {"adv_steps", o_.adv_steps()}});
  if (o_.purify_attack_eps() > 0)
    opts.update({{"purify_attack_eps", o_.purify_attack_eps()}, {"purify_attack_fraction", o_.purify_attack_fraction()},
                 {"purify_attack_steps", o_.purify_attack_steps()}});
}

}  // namespace ebm
