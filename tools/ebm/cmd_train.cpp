// ebm train --task T --data NAME --out MODEL [...]
#include <cstdio>

#include "cli.h"
#include "ebm/core/common.h"
#include "ebm/train/train.h"

namespace ebm::cli {

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
      "wall time, images/s, metrics on the test split). A run whose energies blow up\n"
      "rolls back to its last checkpoint with half the learning rate.\n\n"
      "Example: ebm train --task dsm --data fashion-mnist --steps 3000 --out models/my-dsm");
  static TrainOptions o;
  static std::string task = "ebm", data = "fashion-mnist", out, arch_type, attribute = "digit", init, activation;
  static int64_t width = 0, steps = 2000, batch = 64, warmup = 0, buffer = 10000, sgld_steps = 20,
                 ckpt_every = 250, sample_every = 0, stop_after = -1, eval_n = 2000;
  static double lr = 1e-4, beta1 = 0.0, clip = 1.0, data_noise = 0.005, reinit = 0.05, sgld_step = 10.0,
                sgld_noise = 0.005, sgld_clip = 0.03, l2 = 0.1, gen_weight = 1.0, ft_weight = 0.1;
  static std::string m_in = "auto", m_out = "auto", lr_schedule = "constant", buffer_init = "uniform", purify_augment;
  static double purify_fraction = 0.5, purify_attack_eps = 0.0, purify_attack_fraction = 0.5;
  static int64_t purify_attack_steps = 10, adv_steps = 7;
  static double adv_eps = 0.0, adv_fraction = 0.5;
  static int64_t augment_shift = 0;
  static double noise_augment = 0.0;
  static std::vector<double> sigmas{0.1, 0.2, 0.3};
  static bool resume = false, dsm_clip = false;
  static Common c;
  sub->add_option("--task", task, "clf | ebm | jem | attribute | dsm | energy-finetune")->capture_default_str()
      ->check(CLI::IsMember({"clf", "ebm", "jem", "attribute", "dsm", "energy-finetune"}));
  sub->add_option("--data", data, "Dataset name (fashion-mnist, mnist, or a file)")->capture_default_str();
  sub->add_option("--out", out, "Output model folder (weights.pt + card.json)")->required();
  sub->add_option("--arch", arch_type, "conv-ebm | conv-classifier (default: by task)");
  sub->add_option("--width", width, "Base channel width of the architecture (default 32)");
  sub->add_option("--activation", activation, "conv-classifier activation: silu (default) | leaky_relu");
  sub->add_option("--attribute", attribute, "For --task attribute: digit | thickness")->capture_default_str();
  sub->add_option("--init", init, "The model to start from (weights only): required by energy-finetune; a warm start for jem, clf or attribute (a classifier) or dsm (an energy model)");
  sub->add_option("--steps", steps, "Optimiser steps")->capture_default_str();
  sub->add_option("--batch", batch, "Batch size")->capture_default_str();
  sub->add_option("--lr", lr, "Adam learning rate")->capture_default_str();
  sub->add_option("--beta1", beta1, "Adam beta1 (0 for EBMs, as IGEBM/UvA)")->capture_default_str();
  sub->add_option("--warmup", warmup, "Linear LR warm-up steps (JEM: 1000)")->capture_default_str();
  sub->add_option("--lr-schedule", lr_schedule, "constant | cosine (decay to 0 after warm-up)")->capture_default_str();
  sub->add_option("--augment-shift", augment_shift, "Random translation of data by up to K pixels (classifiers)")->capture_default_str();
  sub->add_option("--clip-grad-norm", clip, "Parameter gradient norm clip (0 = off)")->capture_default_str();
  sub->add_option("--data-noise", data_noise, "Gaussian noise std on data (dequantisation)")->capture_default_str();
  sub->add_option("--noise-augment", noise_augment, "Per-image noise std ~ U(0,S) on data, clipped (classifier guidance)")->capture_default_str();
  sub->add_option("--buffer-size", buffer, "Replay buffer size (IGEBM/JEM: 10000)")->capture_default_str();
  sub->add_option("--reinit", reinit, "Fraction of chains restarted from a fresh start (--buffer-init) each step (5%)")->capture_default_str();
  sub->add_option("--purify-augment", purify_augment,
                  "Classifiers: replace a fraction of each batch by one purification draw of the clean images,\n"
                  "using this purifier model and its card's \"purify\" settings (e.g. models/mnist-purifier)");
  sub->add_option("--purify-fraction", purify_fraction, "Fraction of each batch purified")->capture_default_str();
  sub->add_option("--adv-eps", adv_eps,
                  "Classifiers: adversarial training, L-inf PGD of this radius on a share of each batch (0 = off)")
      ->capture_default_str();
  sub->add_option("--adv-fraction", adv_fraction, "Share of each batch replaced by PGD examples")->capture_default_str();
  sub->add_option("--adv-steps", adv_steps, "PGD steps of adversarial training (step 2.5*eps/steps)")->capture_default_str();
  sub->add_option("--purify-attack-eps", purify_attack_eps,
                  "Adversarial purification training: L-inf PGD of this radius against the classifier being\n"
                  "trained (grey-box: the attack never sees the purifier) before purifying (0 = off)")
      ->capture_default_str();
  sub->add_option("--purify-attack-fraction", purify_attack_fraction, "Share of the purified images attacked first")
      ->capture_default_str();
  sub->add_option("--purify-attack-steps", purify_attack_steps, "PGD steps of that attack (step 2.5*eps/steps)")
      ->capture_default_str();
  sub->add_option("--buffer-init", buffer_init,
                  "Chain starts: uniform (U(0,1), IGEBM/JEM) | gaussian (per-class Gaussian fitted to the fit split, "
                  "JEM++)")
      ->capture_default_str();
  sub->add_option("--sgld-steps", sgld_steps, "Langevin steps per iteration (20-60 in the literature)")->capture_default_str();
  sub->add_option("--sgld-step", sgld_step, "Langevin step size (IGEBM/UvA: ~10)")->capture_default_str();
  sub->add_option("--sgld-noise", sgld_noise, "Langevin noise std (IGEBM/UvA: 0.005)")->capture_default_str();
  sub->add_option("--sgld-grad-clip", sgld_clip, "Cap on |grad E| per pixel (UvA: 0.03)")->capture_default_str();
  sub->add_option("--l2", l2, "Energy L2 penalty alpha (UvA: 0.1)")->capture_default_str();
  sub->add_option("--gen-weight", gen_weight, "Weight of the PCD term in jem/attribute")->capture_default_str();
  sub->add_option("--dsm-sigmas", sigmas, "Noise levels for --task dsm")->delimiter(',')->capture_default_str();
  sub->add_flag("--dsm-clip", dsm_clip, "dsm: clip noisy inputs to [0,1] as restoration does; the target is the noise left");
  sub->add_option("--m-in", m_in, "energy-finetune in-distribution margin, or auto (from data)")->capture_default_str();
  sub->add_option("--m-out", m_out, "energy-finetune outlier margin, or auto (from data)")->capture_default_str();
  sub->add_option("--ft-weight", ft_weight, "energy-finetune weight of the margin loss")->capture_default_str();
  sub->add_option("--checkpoint-every", ckpt_every, "Checkpoint interval in steps")->capture_default_str();
  sub->add_option("--sample-every", sample_every, "PNG grid of negatives every N steps (0 = off)")->capture_default_str();
  sub->add_flag("--resume", resume, "Continue from MODEL/checkpoint.pt");
  sub->add_option("--stop-after", stop_after, "Stop after N steps in this run, keeping the checkpoint")->capture_default_str();
  sub->add_option("--eval-n", eval_n, "Test images for the end-of-run metrics")->capture_default_str();
  add_common(sub, c, true);
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      auto margin = [](const std::string& s, const char* flag) {
        if (s == "auto") return std::nan("");
        try {
          return std::stod(s);
        } catch (...) {
          throw UsageError(std::string(flag) + " must be a number or auto, got '" + s + "'");
        }
      };
      nlohmann::json arch;
      if (!arch_type.empty() || width > 0) {
        arch["type"] = arch_type.empty() ? (task == "ebm" || task == "dsm" ? "conv-ebm" : "conv-classifier") : arch_type;
        arch["width"] = width > 0 ? width : 32;
      }
      if (!activation.empty()) {
        if (arch.is_null()) arch = {{"type", "conv-classifier"}, {"width", 32}};
        arch["activation"] = activation;
      }
      o.task(task).data(data).out(out).arch(arch).attribute(attribute).init(init).steps(steps).batch(batch)
          .lr(lr).beta1(beta1).warmup(warmup).lr_schedule(lr_schedule).augment_shift(augment_shift).clip_grad_norm(clip).data_noise(data_noise).noise_augment(noise_augment).buffer_size(buffer).buffer_init(buffer_init).purify_augment(purify_augment).purify_fraction(purify_fraction)
          .purify_attack_eps(purify_attack_eps).purify_attack_fraction(purify_attack_fraction).purify_attack_steps(purify_attack_steps)
          .adv_eps(adv_eps).adv_fraction(adv_fraction).adv_steps(adv_steps)
          .reinit(reinit).sgld_steps(sgld_steps).sgld_step(sgld_step).sgld_noise(sgld_noise)
          .sgld_grad_clip(sgld_clip).l2(l2).gen_weight(gen_weight).dsm_sigmas(sigmas).dsm_clip(dsm_clip)
          .m_in(margin(m_in, "--m-in")).m_out(margin(m_out, "--m-out")).ft_weight(ft_weight)
          .seed(c.seed).checkpoint_every(ckpt_every).sample_every(sample_every).resume(resume)
          .stop_after(stop_after).eval_n(eval_n).command(command_line());
      auto r = train(o);
      if (r.card.is_null()) {
        std::printf("stopped at step %lld; checkpoint in %s/checkpoint.pt\n", (long long)r.steps, out.c_str());
        return 0;
      }
      write_json(c.json_out, r.card);
      if (c.json_out != "-")
        std::printf("saved %s (%lld steps, %.0fs): %s\n", out.c_str(), (long long)r.steps,
                    r.card["wall_seconds"].get<double>(), r.card["metrics"].dump().c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
