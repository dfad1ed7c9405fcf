// ebm ood eval | calibrate | predict | ensemble | shift: OOD detection with a model's scores.
// Thin: parse, call the library (ebm/ood.h, ebm/metrics.h), report.
#include <cmath>
#include <cstdio>
#include <iostream>

#include <torch/torch.h>

#include "cli.h"
#include "ebm/core/ensemble.h"
#include "ebm/core/fs.h"
#include "ebm/io/data.h"
#include "ebm/ood/ensemble.h"
#include "ebm/io/image_io.h"
#include "ebm/core/models.h"
#include "ebm/ood/ood.h"
#include "ebm/ood/shift_eval.h"

namespace ebm::cli {

namespace {

const char* kScoreHelp =
    "Scores (all: higher = more OOD):\n"
    "  energy     the model's energy; for a classifier the free energy -T*logsumexp(logits/T)\n"
    "  msp        minus the max softmax probability (classifiers only; Hendrycks & Gimpel)\n"
    "  maxlogit   minus the max logit (classifiers only)\n"
    "  grad-norm  L2 norm of grad_x E(x) per image (JEM-style; needs autograd, slower)\n"
    "  energy-complexity  energy minus the image's PNG length in nats (Serra et al. 2020):\n"
    "             corrects the energy's preference for simple images\n"
    "  combined   the z-score of energy-complexity, except that an input whose energy exceeds\n"
    "             every in-distribution VALIDATION energy ranks above all others (gated by the\n"
    "             energy). Statistics from the val split only (no OOD data); stored in reports\n"
    "             and detectors\n"
    "Standard post-hoc detectors (built-in classifiers; for comparison in `ood eval` only):\n"
    "  odin       -max softmax(logits(x')/T), x' one signed-gradient step of size eps (Liang et al.)\n"
    "  mahalanobis  min over classes of the Mahalanobis distance of the penultimate features,\n"
    "             tied covariance (Lee et al.)\n"
    "  knn        distance of the normalised features to the k-th nearest fit-split feature (Sun et al.)\n"
    "  vim        virtual-logit matching: feature residual off the principal subspace (Wang et al.)\n"
    "  react      free energy with features clipped at a percentile of the fit split (Sun et al.)\n"
    "             Statistics come from the in-distribution fit split; k, T, eps, the percentile and\n"
    "             ViM's dimension are chosen on its val split against corruptions of its fit split\n"
    "             (pixel-shuffle, patch-shuffle, blur, mixup), never on a reported OOD set; the\n"
    "             report's \"choices\" records them\n"
    "  all        every score that applies to the model, side by side\n"
    "  (free-energy is accepted as another name of energy for classifiers)\n";

void add_ood_eval(CLI::App* ood, Action& run) {
  auto* sub = ood->add_subcommand(
      "eval",
      "Evaluate OOD detection: score the in-distribution TEST split and each OOD set,\n"
      "print AUROC, AUPR-In, AUPR-Out, FPR95 and n per OOD set plus a mean row.");
  static std::string model, score, md, csv, plots, scores_out;
  static OodEvalOptions o;
  static double temperature = std::nan("");  // NaN = the card's (card_temperature)
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  sub->add_option("--in", o.in(), "In-distribution dataset; its --split is scored")->required();
  sub->add_option("--split", o.split(),
                  "test (reported figures, any OOD sets) or val (for choices: the val split against validation\n"
                  "OOD only: pixel-shuffle, patch-shuffle, blur, mixup or val-ood, built from the fit split, and\n"
                  "glyphs, the real set sacrificed for choices)")
      ->capture_default_str();
  sub->add_option("--ood", o.ood(), "OOD datasets, comma-separated, e.g. mnist,gaussian,uniform,constant,vflip:fashion-mnist")
      ->required()
      ->delimiter(',');
  sub->add_option("--score", score, "energy | msp | maxlogit | grad-norm | energy-complexity | combined | odin | mahalanobis | knn | vim | react | all, or a comma list (default: the model card's default_score, else energy)");
  sub->add_option("--temperature", temperature, "T of the classifier free energy (default: the card's, else 1)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--n-in", o.n_in(), "At most N in-distribution test images (-1 = all)")->capture_default_str();
  sub->add_option("--n-ood", o.n_ood(), "At most N images per OOD set (-1 = all; synthetic sets: 2000)")->capture_default_str();
  sub->add_option("--batch", o.batch(), "Images per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--bootstrap", o.bootstrap(), "Bootstrap resamples for 95% confidence intervals (0 = none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--markdown", md, "Also write the table(s) as Markdown");
  sub->add_option("--csv", csv, "Also write a long-format CSV (one row per score and OOD set)");
  sub->add_option("--plots", plots, "Write PNG score histograms (in vs each OOD) and ROC curves into DIR");
  sub->add_option("--scores-out", scores_out,
                  "Write every image's scores as CSV (set,index,<score>,...) for your own analysis");
  add_common(sub, c, true);
  sub->footer(std::string(kScoreHelp) +
              "\nMetrics (see include/ebm/metrics.h; validated against scikit-learn):\n"
              "  AUROC     P(OOD scores higher than in-distribution), ties count half\n"
              "  AUPR-In   average precision with in-distribution positive; AUPR-Out with OOD positive\n"
              "  FPR95     fraction of OOD accepted at the threshold that accepts 95% of in-distribution\n"
              "            (positive = in-distribution; Hendrycks/Liu, not OpenOOD's convention)\n"
              "Groups (as OpenOOD reports them): near = another image domain of the same kind (mnist for\n"
              "fashion-mnist and the reverse, letters, vflip:, invert:); far = noise, constants and unrelated\n"
              "images (gaussian, uniform, constant, icons, photos). The table adds a mean per group. A set\n"
              "that shares a generator with the model's training outliers, or that one of its choices looked\n"
              "at (its card's ood_seen / ood_choices_saw, or its members'), is marked \"seen\" and left out\n"
              "of every mean.\n"
              "AUPR depends on the in:OOD ratio, so n is reported per set. --seed fixes the synthetic sets\n"
              "(gaussian, uniform, constant) and the bootstrap.\n"
              "--scores-out writes every image's scores (set,index,<score>,...), e.g. to fit your own\n"
              "combination on the validation split: pass a val export as an extra --ood set.\n\n"
              "JSON (--json): {\"score\",\"in\",\"n_in\",\"ood\":[{\"name\",\"group\",\"n\",\"auroc\",\"aupr_in\",\"aupr_out\",\"fpr95\",...}],\n"
              "                \"mean\",\"groups\":{\"near\",\"far\"},\"classifier\":{\"accuracy\"}}; post-hoc scores add\n"
              "                \"choices\"; with several scores {\"scores\":[one report per score]}.\n\n"
              "Example:\n"
              "  ebm ood eval --model models/fmnist-ood --in fashion-mnist \\\n"
              "      --ood mnist,gaussian,uniform,constant,vflip:fashion-mnist,invert:fashion-mnist \\\n"
              "      --score all --json ood.json --markdown ood.md --plots ood-plots\n");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      check_outputs({md, csv, scores_out, c.json_out});
      auto e = load_model(model);
      const std::string spec = score.empty() ? card_default_score(model) : score;
      o.scores(parse_scores(spec, *e)).temperature(card_temperature(model, temperature)).seed(c.seed).progress(!c.quiet);
      o.seen(seen_in_training(model));
      const auto reports = evaluate_ood(*e, o);
      json j = reports_json(reports);
      j["model"] = model;
      j["model_sha256"] = model_hash(model);
      j["command"] = command_line();
      j["models"] = {{model, j["model_sha256"]}};
      // Side outputs first, so that a failure leaves no JSON claiming success.
      if (!plots.empty()) {
        const auto paths = write_ood_plots(reports, plots);
        std::fprintf(stderr, "wrote %zu plot(s) to %s/\n", paths.size(), plots.c_str());
      }
      if (!md.empty()) write_file_atomic(md, provenance_header({model}) + format_markdown(reports));
      if (!csv.empty()) write_file_atomic(csv, format_csv(reports));
      if (!scores_out.empty()) write_file_atomic(scores_out, format_scores_csv(reports));
      write_json(c.json_out, j);
      const std::string table = format_table(reports);
      // `--json -` keeps stdout pure JSON; the table then goes to stderr.
      std::FILE* to = c.json_out == "-" ? stderr : stdout;
      std::fputs(table.c_str(), to);
      std::fflush(to);
      return 0;
    };
  });
}

void add_ood_calibrate(CLI::App* ood, Action& run) {
  auto* sub = ood->add_subcommand(
      "calibrate",
      "Fit a decision threshold on the in-distribution VALIDATION split (held out from\n"
      "training; never the test split) and save a detector for `ebm ood predict`.");
  static std::string model, out, score;
  static CalibrateOptions o;
  static double temperature = std::nan("");  // NaN = the card's (card_temperature)
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  sub->add_option("--in", o.in(), "In-distribution dataset: its validation split is scored (a file path is used whole)")->required();
  sub->add_option("--percentile", o.percentile(), "Share (%) of validation images accepted as in-distribution")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  sub->add_option("--out", out, "Detector JSON to write")->required();
  sub->add_option("--score", score, "energy | msp | maxlogit | grad-norm | energy-complexity | combined (default: the card's default_score, its first if several, else energy)");
  sub->add_option("--temperature", temperature, "T of the classifier free energy (default: the card's, else 1)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--n", o.n(), "At most N validation images (-1 = all)")->capture_default_str();
  sub->add_option("--batch", o.batch(), "Images per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  add_common(sub, c);
  sub->footer(std::string(kScoreHelp) +
              "\nThe threshold t is the k-th smallest of the n sorted validation scores, k = ceil(p/100*n):\n"
              "an image is OOD when its score > t, so at least p% of validation images are accepted and\n"
              "about (100-p)% of fresh in-distribution images are flagged. The sorted validation scores are\n"
              "stored, so predictions carry the conformal p-value (1 + #{val >= score}) / (n + 1).\n"
              "The detector records the model path and hash; predict refuses any other model.\n\n"
              "Example:\n"
              "  ebm ood calibrate --model models/fmnist-ood --in fashion-mnist --percentile 95 \\\n"
              "      --out models/fmnist-ood.detector.json\n");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      // Without --score: the card's default score (the first one, if it names several or "all").
      const std::string s = !score.empty() ? score : parse_scores(card_default_score(model), *load_model(model)).front();
      o.score(s).temperature(card_temperature(model, temperature)).progress(!c.quiet);
      Detector d = calibrate_model(model, o);
      json j = d.to_json();
      j["command"] = command_line();
      write_file_atomic(out, j.dump(1) + "\n");
      int64_t accepted = 0;
      for (double v : d.val_scores) accepted += !d.is_ood(v);
      std::printf("detector: score %s, threshold %.6g (OOD if score > threshold); accepts %lld of %lld %s %s images (%.2f%%) -> %s\n",
                  d.score.c_str(), d.threshold, (long long)accepted, (long long)d.n_val(), d.in.c_str(),
                  d.split.c_str(), 100.0 * accepted / d.n_val(), out.c_str());
      return 0;
    };
  });
}

void add_predict(CLI::App* ood, Action& run) {
  auto* sub = ood->add_subcommand(
      "predict",
      "Flag images as OOD with a calibrated detector. Prints one JSON line per image:\n"
      "{\"index\",\"energy\",\"ood\",\"p_value\",\"score\"}; \"energy\" is the value of the detector's score.");
  static std::string detector, input, model;
  static int64_t batch = kScoringBatch;
  static Common c;
  sub->add_option("--detector", detector, "Detector JSON from `ebm ood calibrate`")->required()->check(CLI::ExistingFile);
  sub->add_option("--input", input, "Images (.idx/.npy/.png), pixels in [0,1] (uint8 files are divided by 255)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--model", model, "Use this model file instead of the recorded one (must have the same hash)");
  sub->add_option("--batch", batch, "Images per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  add_common(sub, c);
  sub->footer(
      "ood is true when the score exceeds the detector's threshold; p_value = (1 + #{val >= score}) / (n_val + 1)\n"
      "is the chance that an in-distribution image scores at least this high (small = OOD-like).\n"
      "The model is the one recorded in the detector (a relative path is also tried next to the detector\n"
      "file); a model whose weights hash differs is refused.\n\n"
      "Example:\n"
      "  ebm ood predict --detector models/fmnist-ood.detector.json --input images.npy\n");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      const Detector d = Detector::load(detector);
      const std::string path = detector_model_path(d, detector, model);
      check_model(d, path);
      auto e = load_model(path);
      const auto x = read_images(input);
      const auto preds = predict(d, *e, x, batch);
      int64_t flagged = 0;
      std::string out;
      for (const auto& p : preds) {
        flagged += p.ood;
        out += p.to_json(d.score).dump() + "\n";
      }
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
      if (!c.quiet)
        std::fprintf(stderr, "%lld of %zu image(s) flagged OOD (score %s > %.6g)\n", (long long)flagged,
                     preds.size(), d.score.c_str(), d.threshold);
      return 0;
    };
  });
}

void add_ensemble(CLI::App* ood, Action& run) {
  auto* sub = ood->add_subcommand(
      "ensemble",
      "Build an ensemble model: the sum of member energies, each standardised on the\n"
      "in-distribution VALIDATION split (never test, never OOD data). The result is a model\n"
      "folder like any other (ood eval/calibrate/predict, denoise, ...).");
  static std::string out, purpose;
  static EnsembleOptions o;
  static Common c;
  sub->add_option("--members", o.members(), "Member models, comma-separated (native folders or TorchScript files)")
      ->required()
      ->delimiter(',');
  sub->add_option("--weights", o.weights(), "One weight per member, comma-separated (default: all 1)")->delimiter(',');
  sub->add_option("--in", o.data(), "In-distribution dataset whose split fits the standardisation")->required();
  sub->add_option("--split", o.split(), "val | fit (never test)")->capture_default_str()->check(CLI::IsMember({"val", "fit"}));
  sub->add_option("--n", o.n(), "At most N images of the split (-1 = all)")->capture_default_str();
  sub->add_option("--batch", o.batch(), "Images per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--default-score", o.default_score(), "The score `ood eval` uses for this model when --score is omitted")
      ->capture_default_str();
  sub->add_option("--purpose", purpose, "A sentence for the card saying what the model is for");
  sub->add_option("--out", out, "Model folder to write (card.json only; members are referenced, not copied)")
      ->required();
  add_common(sub, c);
  sub->footer(
      "E(x) = sum_i w_i * (E_i(x) - mean_i) / sd_i, with mean_i and sd_i of member i's energy on the\n"
      "split (a classifier contributes its free energy at its card's temperature). Members are stored\n"
      "as paths relative to --out and pinned by hash: if a member changes, loading the ensemble fails\n"
      "until it is rebuilt. See include/ebm/ensemble.h.\n\n"
      "Example (the shipped MNIST OOD model):\n"
      "  ebm ood ensemble --members models/mnist-dsm,models/mnist-eft --in mnist --out models/mnist-ood\n");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      json card = fit_ensemble(o, out);
      card["default_score"] = o.default_score();
      if (!purpose.empty()) card["purpose"] = purpose;
      card["command"] = command_line();
      // Build it from the card first, so that a bad default score fails before anything is written.
      check_score(canonical_score(o.default_score()), *load_ensemble(out, card));
      save_ensemble(out, card);
      for (const auto& m : card["members"])
        std::printf("%-28s weight %g  shift %.6g  scale %.6g\n", m["model"].get<std::string>().c_str(),
                    m["weight"].get<double>(), m["shift"].get<double>(), m["scale"].get<double>());
      std::printf("ensemble of %zu member(s), standardised on %s/%s (n = %lld) -> %s\n", card["members"].size(),
                  o.data().c_str(), o.split().c_str(), (long long)card["fit"]["n"].get<int64_t>(), out.c_str());
      return 0;
    };
  });
}


void add_shift(CLI::App* ood, Action& run) {
  auto* sub = ood->add_subcommand(
      "shift",
      "OOD detection under graded distribution shift: apply each shift family at increasing\n"
      "severity to the in-distribution TEST split; per severity report the score's AUROC and FPR95\n"
      "against the clean images, the classifier's accuracy and the detector's flagged share; per\n"
      "family the severity where AUROC first reaches 0.9 and the flag-error agreement.");
  static ShiftOptions o;
  static std::string plot, md;
  static Common c;
  sub->add_option("--model", o.model(), "Native model folder or TorchScript file (the detector's model)")->required();
  sub->add_option("--in", o.in(), "In-distribution dataset; its test split is shifted")->required();
  sub->add_option("--classifier", o.classifier(),
                  "Classifier for accuracy, flag-error agreement and --score (default: the model if it is one)");
  sub->add_option("--detector", o.detector(), "Calibrated detector JSON (ebm ood calibrate): the flagged share")
      ->check(CLI::ExistingFile);
  sub->add_option("--shifts", o.shifts(), "Shift families, comma-separated (see below)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--levels", o.levels(), "Severities per family, linspace(0, max, K)")->capture_default_str();
  sub->add_option("--score", o.score(),
                  "Comparison scores beside the primary one, on the classifier: all (msp, maxlogit, energy, odin,\n"
                  "mahalanobis, knn, vim, react) or a comma list (default: none)");
  sub->add_option("--n", o.n(), "Clean test images (the first N; -1 = all)")->capture_default_str();
  sub->add_option("--batch", o.batch(), "Images per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--plot", plot, "Write a PNG: one panel per family (AUROC, accuracy, flagged vs severity)");
  sub->add_option("--markdown", md, "Also write the tables as Markdown (with the command and model hashes)");
  add_common(sub, c, true);
  std::string families;
  for (const auto& f : shift_families()) families += "  " + Shift::parse(f == "mix" ? "mix:<name>" : f).describe() + "\n";
  sub->footer(
      "Shift families (severity 0 = the clean image; each seeded by --seed, the same draw at every severity):\n" +
      families +
      "  (mix:<name> mixes with <name>'s TEST split: any dataset name or image file)\n\n"
      "The primary score is the detector's (its score and temperature), else the model card's default.\n"
      "AUROC and FPR95 compare the shifted images (OOD) with the same clean images, so severity 0 reads 0.5.\n"
      "Flag-error agreement: the AUROC of a score at separating the images the classifier gets wrong from\n"
      "those it gets right, every severity of a family pooled (and over all families).\n"
      "Post-hoc scores are fitted as in `ood eval` (fit split; choices on validation OOD only).\n\n"
      "JSON (--json): {\"model\",\"in\",\"shifts\":[{\"name\",\"levels\":[{\"severity\",\"auroc\",\"fpr95\",\"accuracy\",\n"
      "                \"flagged\",\"scores\"}],\"auroc_reaches_0.9_at\",\"flag_error_auroc\",\"by_score\"}], ...}\n\n"
      "Example:\n"
      "  ebm ood shift --model models/fmnist-eft --detector models/fmnist-eft.detector.json --in fashion-mnist \\\n"
      "      --shifts noise,blur,rotate,contrast,occlude,quantize,mix:mnist --score all \\\n"
      "      --json shift.json --plot shift.png --markdown shift.md\n");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      check_outputs({plot, md, c.json_out});  // before minutes of work, and before any one of them is written
      o.seed(c.seed).progress(!c.quiet);
      const ShiftReport r = ood_shift(o);
      json j = r.to_json();
      std::vector<std::string> paths{o.model()};
      if (!o.classifier().empty()) paths.push_back(o.classifier());
      j["command"] = command_line();
      j["model_sha256"] = model_hash(o.model());
      j["models"] = json::object();
      for (const auto& p : paths) j["models"][p] = model_hash(p);
      // Side outputs first, so that a failure leaves no JSON claiming success.
      if (!plot.empty()) write_shift_plot(r, plot);
      if (!md.empty()) write_file_atomic(md, provenance_header(paths) + format_shift_markdown(r));
      write_json(c.json_out, j);
      const std::string table = format_shift_table(r);
      std::FILE* to = c.json_out == "-" ? stderr : stdout;
      std::fputs(table.c_str(), to);
      std::fflush(to);
      return 0;
    };
  });
}

}  // namespace

void add_ood(CLI::App& app, Action& run) {
  auto* ood = app.add_subcommand(
      "ood",
      "Out-of-distribution detection: evaluate scores (eval), fit a threshold (calibrate),\n"
      "flag new images (predict), combine models (ensemble), graded shift (shift).\n"
      "Run `ebm ood <eval|calibrate|predict|ensemble|shift> --help`.");
  ood->require_subcommand(1);
  add_ood_eval(ood, run);
  add_ood_calibrate(ood, run);
  add_predict(ood, run);
  add_ensemble(ood, run);
  add_shift(ood, run);
}

}  // namespace ebm::cli
