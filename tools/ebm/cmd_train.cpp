// ebm train --task T --data NAME --out MODEL [...]
#include <cmath>
#include <cstdio>

#include "cli.h"
#include "ebm/core/common.h"
#include "ebm/train/train.h"

namespace ebm::cli {

namespace {
// An energy-finetune margin: a number, or "auto" (NaN in TrainOptions: from data).
void add_margin(CLI::App* sub, const std::string& flag, double& target, const std::string& help) {
  sub->add_option_function<std::string>(
         flag,
         [flag, &target](const std::string& v) {
           if (v == "auto") {
             target = std::nan("");
             return;
           }
           try {
             size_t used = 0;
             target = std::stod(v, &used);
             if (used == v.size()) return;
           } catch (...) {
           }
           throw CLI::ValidationError(flag, "must be a number or auto, got '" + v + "'");
         },
         help)
      ->default_str(std::isnan(target) ? "auto" : std::to_string(target));
}
}  // namespace

void add_train(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("train", "Train a model (clf, ebm, jem, attribute, dsm, energy-finetune)");
  sub->footer(
      "Tasks:\n"
      "  clf              cross-entropy classifier\n"
      "  ebm              unconditional EBM, persistent contrastive divergence + replay buffer\n"
      "  jem              JEM hybrid: cross-entropy + PCD on E(x) = -logsumexp f(x)\n"
      "  attribute        JEM on an attribute (--attribute digit|thickness); E(x|c) = -f(x)[c]\n"
      "  dsm              denoising score matching at --dsm-sigmas (the restoration prior)\n"
      "  energy-finetune  energy-bounded fine-tuning of --init with synthetic outliers\n"
      "Training uses the dataset's 'fit' split; val and test are never trained on.\n"
      "Checkpoints go to MODEL/checkpoint.pt (atomic); --resume continues bit-exactly.\n"
      "Every run ends by saving MODEL/weights.pt and MODEL/card.json (command, seed,\n"
      "wall time, images/s, metrics on the VAL split). A run whose energies blow up\n"
      "rolls back to its last checkpoint with half the learning rate.\n"
      "Data-parallel: `ebm launch -n 2 -- ebm train ...` runs 2 ranks (c10d/Gloo), each on\n"
      "half of --batch; see docs/distributed.md for several machines.\n\n"
      "Example: ebm train --task dsm --data fashion-mnist --steps 3000 --out models/my-dsm");
  static TrainOptions o;
  sub->add_option("--task", o.task(), "clf | ebm | jem | attribute | dsm | energy-finetune")->capture_default_str()
      ->check(CLI::IsMember({"clf", "ebm", "jem", "attribute", "dsm", "energy-finetune"}));
  sub->add_option("--data", o.data(), "Dataset name (fashion-mnist, mnist, or a file)")->capture_default_str();
  sub->add_option("--out", o.out(), "Output model folder (weights.pt + card.json)")->required();
  sub->add_option("--arch", o.arch_type(),
                  "conv-ebm | conv-ebm-nc | unet-ebm-nc | conv-classifier (default: by task: conv-ebm for ebm\n"
                  "and dsm). The -nc ones are noise-conditional energies E(x, sigma) for --task dsm, told each\n"
                  "image's noise level (conv-ebm-nc: a conv energy; unet-ebm-nc: |x - D(x, sigma)|^2 / 2 sigma^2\n"
                  "for a U-Net denoiser D); `ebm sample` draws from them by annealed Langevin")
      ->check(CLI::IsMember({"conv-ebm", "conv-ebm-nc", "unet-ebm-nc", "conv-classifier"}));
  sub->add_option("--width", o.width(), "Base channel width of the architecture")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--activation", o.activation(), "conv-classifier activation: silu (default) | leaky_relu")->check(CLI::IsMember({"silu", "leaky_relu"}));
  sub->add_option("--attribute", o.attribute(), "For --task attribute: digit | thickness")->capture_default_str();
  sub->add_option("--init", o.init(), "The model to start from (weights only): required by energy-finetune; a warm start for jem, clf or attribute (a classifier) or dsm (an energy model)");
  sub->add_option("--steps", o.steps(), "Optimiser steps")->capture_default_str();
  sub->add_option("--batch", o.batch(), "Batch size")->capture_default_str();
  sub->add_option("--lr", o.lr(), "Adam learning rate")->capture_default_str();
  sub->add_option("--beta1", o.beta1(), "Adam beta1 (0 for EBMs, as IGEBM/UvA)")->capture_default_str();
  sub->add_option("--warmup", o.warmup(), "Linear LR warm-up steps (JEM: 1000)")->capture_default_str();
  sub->add_option("--lr-schedule", o.lr_schedule(), "constant | cosine (decay to 0 after warm-up)")->capture_default_str();
  sub->add_option("--augment-shift", o.augment_shift(), "Random translation of data by up to K pixels (classifiers)")->capture_default_str();
  sub->add_option("--clip-grad-norm", o.clip_grad_norm(), "Parameter gradient norm clip (0 = off)")->capture_default_str();
  sub->add_option("--ema", o.ema(),
                  "Save the exponential moving average of the weights with this decay, e.g. 0.999 (0 = off;\n"
                  "NCSNv2 samples its score models from it)")
      ->capture_default_str();
  sub->add_option("--data-noise", o.data_noise(), "Gaussian noise std on data (dequantisation)")->capture_default_str();
  sub->add_option("--noise-augment", o.noise_augment(), "Per-image noise std ~ U(0,S) on data, clipped (classifier guidance)")->capture_default_str();
  sub->add_option("--noise-augment-sigmas", o.noise_augment_sigmas(),
                  "Noise-aware guidance for annealed sampling: per image, noise of one of these stds or none,\n"
                  "unclipped (e.g. the prior's --dsm-sigmas)")
      ->delimiter(',');
  sub->add_option("--buffer-size", o.buffer_size(), "Replay buffer size (IGEBM/JEM: 10000)")->capture_default_str();
  sub->add_option("--reinit", o.reinit(), "Fraction of chains restarted from a fresh start (--buffer-init) each step (5%)")->capture_default_str();
  sub->add_option("--purify-augment", o.purify_augment(),
                  "Classifiers: replace a fraction of each batch by one purification draw of the clean images,\n"
                  "using this purifier model and its card's \"purify\" settings (e.g. models/mnist-purifier)");
  sub->add_option("--purify-fraction", o.purify_fraction(), "Fraction of each batch purified")->capture_default_str();
  sub->add_option("--adv-eps", o.adv_eps(),
                  "Classifiers: adversarial training, L-inf PGD of this radius on a share of each batch (0 = off)")
      ->capture_default_str();
  sub->add_option("--adv-fraction", o.adv_fraction(), "Share of each batch replaced by PGD examples")->capture_default_str();
  sub->add_option("--adv-steps", o.adv_steps(), "PGD steps of adversarial training (step 2.5*eps/steps)")->capture_default_str();
  sub->add_option("--purify-attack-eps", o.purify_attack_eps(),
                  "Adversarial purification training: L-inf PGD of this radius against the classifier being\n"
                  "trained (grey-box: the attack never sees the purifier) before purifying (0 = off)")
      ->capture_default_str();
  sub->add_option("--purify-attack-fraction", o.purify_attack_fraction(), "Share of the purified images attacked first")
      ->capture_default_str();
  sub->add_option("--purify-attack-steps", o.purify_attack_steps(), "PGD steps of that attack (step 2.5*eps/steps)")
      ->capture_default_str();
  sub->add_option("--buffer-init", o.buffer_init(),
                  "Chain starts: uniform (U(0,1), IGEBM/JEM) | gaussian (per-class Gaussian fitted to the fit split, "
                  "JEM++)")
      ->capture_default_str();
  sub->add_option("--sgld-steps", o.sgld_steps(), "Langevin steps per iteration (20-60 in the literature)")->capture_default_str();
  sub->add_option("--sgld-step", o.sgld_step(), "Langevin step size (IGEBM/UvA: ~10)")->capture_default_str();
  sub->add_option("--sgld-noise", o.sgld_noise(), "Langevin noise std (IGEBM/UvA: 0.005)")->capture_default_str();
  sub->add_option("--sgld-grad-clip", o.sgld_grad_clip(), "Cap on |grad E| per pixel (UvA: 0.03)")->capture_default_str();
  sub->add_option("--l2", o.l2(), "Energy L2 penalty alpha (UvA: 0.1)")->capture_default_str();
  sub->add_option("--gen-weight", o.gen_weight(), "Weight of the PCD term in jem/attribute")->capture_default_str();
  sub->add_option("--dsm-sigmas", o.dsm_sigmas(), "Noise levels for --task dsm")->delimiter(',')->capture_default_str();
  sub->add_flag("--dsm-clip", o.dsm_clip(), "dsm: clip noisy inputs to [0,1] as restoration does; the target is the noise left");
  add_margin(sub, "--m-in", o.m_in(), "energy-finetune in-distribution margin, or auto (from data)");
  add_margin(sub, "--m-out", o.m_out(), "energy-finetune outlier margin, or auto (from data)");
  sub->add_option("--ft-weight", o.ft_weight(), "energy-finetune weight of the margin loss")->capture_default_str();
  sub->add_option("--outliers", o.outliers(),
                  "energy-finetune outlier generators, comma-separated (outliers.h): pixel-shuffle, patch-shuffle,\n"
                  "blur, mixup, uniform, invert, strokes (random pen strokes), shapes (filled shapes), flip (the\n"
                  "image mirrored or turned), lines (straight segments), splice (two images joined along a cut),\n"
                  "smooth (smooth random fields, never flat). uniform, invert and flip are generators of\n"
                  "the OOD test sets 'uniform', 'invert:<name>' and 'vflip:<name>'; the card's\n"
                  "\"ood_seen\" records them, and `ood eval` leaves those sets out of its means")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--checkpoint-every", o.checkpoint_every(), "Checkpoint interval in steps")->capture_default_str();
  sub->add_option("--sample-every", o.sample_every(), "PNG grid of negatives every N steps (0 = off)")->capture_default_str();
  sub->add_flag("--resume", o.resume(), "Continue from MODEL/checkpoint.pt");
  sub->add_option("--stop-after", o.stop_after(), "Stop after N steps in this run, keeping the checkpoint")->capture_default_str();
  sub->add_option("--eval-n", o.eval_n(), "Val images for the end-of-run metrics (test figures: `ebm eval`)")->capture_default_str();
  static DistOptions d;
  const std::string dist = "Data parallelism (c10d/Gloo; docs/distributed.md; `ebm launch` sets these)";
  sub->add_option("--world-size", d.world_size(), "Number of ranks; --batch is the global batch, split evenly")
      ->capture_default_str()->group(dist);
  sub->add_option("--rank", d.rank(), "This process's rank in [0, world-size)")->capture_default_str()->group(dist);
  sub->add_option("--master", d.master(), "HOST:PORT where rank 0 listens (TCPStore rendezvous)")->group(dist);
  sub->add_option("--dist-timeout", d.timeout(), "Seconds before a silent rank is declared lost")
      ->capture_default_str()->group(dist);
  static Common c;
  add_common(sub, c, true);
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      o.seed(c.seed).command(command_line()).dist(d);
      auto r = train(o);
      if (r.card.is_null()) {
        if (r.steps < o.steps())
          std::printf("stopped at step %lld; checkpoint in %s/checkpoint.pt\n", (long long)r.steps, o.out().c_str());
        else
          std::printf("rank %lld: done (%lld steps); rank 0 saved %s\n", (long long)d.rank(), (long long)r.steps,
                      o.out().c_str());
        return 0;
      }
      write_json(c.json_out, r.card);
      if (c.json_out != "-")
        std::printf("saved %s (%lld steps, %.0fs): %s\n", o.out().c_str(), (long long)r.steps,
                    r.card["wall_seconds"].get<double>(), r.card["metrics"].dump().c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
