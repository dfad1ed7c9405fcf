#include "ebm/train/train.h"

#include <torch/torch.h>

#include <algorithm>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/tweedie.h"
#include "ebm/core/fs.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/core/models.h"
#include "ebm/compose/morphology.h"
#include "ebm/io/progress.h"
#include "ebm/train/augment.h"
#include "ebm/train/evaluate.h"
#include "ebm/train/tasks.h"

namespace ebm {

// ---------------------------------------------------------------- replay buffer
StartSampler uniform_starts(std::vector<int64_t> shape) {
  return [shape](int64_t n, at::Generator& gen) {
    auto s = shape;
    s.insert(s.begin(), n);
    return torch::rand(s, gen);
  };
}

StartSampler gaussian_starts(const torch::Tensor& images, const torch::Tensor& labels, double ridge) {
  TORCH_CHECK(images.dim() == 4 && images.size(0) >= 2, "gaussian_starts: images must be [N>=2,C,H,W], got ",
              images.sizes());
  TORCH_CHECK(ridge > 0, "gaussian_starts: ridge must be > 0, got ", ridge);
  const auto shape = images.sizes().vec();
  const auto flat = images.flatten(1).to(torch::kFloat64);  // [N,D]
  const int64_t d = flat.size(1);
  const auto y = labels.defined() ? labels.to(torch::kInt64) : torch::zeros({flat.size(0)}, torch::kInt64);
  std::vector<torch::Tensor> means, chols;
  std::vector<double> weights;
  for (int64_t c = 0; c <= y.max().item<int64_t>(); ++c) {
    const auto xc = flat.index_select(0, (y == c).nonzero().flatten());
    if (xc.size(0) == 0) continue;
    TORCH_CHECK(xc.size(0) >= 2, "gaussian_starts: class ", c, " has only one image");
    const auto mu = xc.mean(0);
    const auto z = xc - mu;
    const auto cov = z.t().mm(z) / double(xc.size(0) - 1) + ridge * torch::eye(d, torch::kFloat64);
    means.push_back(mu.to(torch::kFloat32));
    chols.push_back(torch::linalg_cholesky(cov).to(torch::kFloat32));  // ridge keeps it positive definite
    weights.push_back(double(xc.size(0)));
  }
  const auto w = torch::tensor(weights, torch::kFloat64);
  const auto mean = torch::stack(means), chol = torch::stack(chols);  // [K,D], [K,D,D]
  return [shape, mean, chol, w, d](int64_t n, at::Generator& gen) {
    const auto k = torch::multinomial(w, n, /*replacement=*/true, gen);  // [n] component of each sample
    const auto z = torch::randn({n, d}, gen);                              // [n,D]
    auto x = torch::empty({n, d});
    // One matmul per component (indexing a [n,D,D] stack of factors would need n*D*D floats).
    for (int64_t c = 0; c < mean.size(0); ++c) {
      const auto rows = (k == c).nonzero().flatten();
      if (rows.numel() == 0) continue;
      x.index_copy_(0, rows, mean[c] + z.index_select(0, rows).mm(chol[c].t()));
    }
    auto s = shape;
    s[0] = n;
    return x.clamp(0, 1).view(s);
  };
}

ReplayBuffer::ReplayBuffer(int64_t capacity, std::vector<int64_t> shape, at::Generator& gen, StartSampler starts)
    : starts_(starts ? std::move(starts) : uniform_starts(shape)) {
  TORCH_CHECK(capacity > 0, "replay buffer capacity must be > 0, got ", capacity);
  data_ = starts_(capacity, gen);
}

torch::Tensor ReplayBuffer::sample(int64_t n, double reinit, at::Generator& gen, torch::Tensor* idx) {
  *idx = torch::randint(data_.size(0), {n}, gen, torch::kInt64);
  auto x = data_.index_select(0, *idx);
  auto fresh = torch::rand({n}, gen) < reinit;                        // [n]
  return torch::where(fresh.view({n, 1, 1, 1}), starts_(n, gen), x);
}

void ReplayBuffer::update(const torch::Tensor& idx, const torch::Tensor& x) {
  data_.index_copy_(0, idx, x.detach());
}

// ---------------------------------------------------------------- losses
torch::Tensor pcd_loss(const torch::Tensor& e_pos, const torch::Tensor& e_neg, double alpha) {
  return e_pos.mean() - e_neg.mean() + alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean());
}

torch::Tensor dsm_loss(Energy& e, const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& eps,
                       bool clip) {
  auto sig = sigma.view({-1, 1, 1, 1});
  auto xt = x + sig * eps;
  auto target = eps;
  if (clip) {
    xt = xt.clamp(0, 1);
    target = (xt - x) / sig;
  }
  xt = xt.detach().requires_grad_(true);
  auto en = e.energy_at(xt, sigma);  // a noise-conditional energy is told the level; others ignore it
  auto g = torch::autograd::grad({en.sum()}, {xt}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
  return 0.5 * (sig * g - target).pow(2).flatten(1).sum(1).mean();
}

torch::Tensor energy_bound_loss(const torch::Tensor& e_in, const torch::Tensor& e_out, double m_in, double m_out) {
  return torch::relu(e_in - m_in).pow(2).mean() + torch::relu(m_out - e_out).pow(2).mean();
}

// ---------------------------------------------------------------- trainer
namespace {

void check_unit_interval(const std::string& flag, double v) {
  if (!(v >= 0 && v <= 1)) throw UsageError(flag + " must be in [0, 1], got " + std::to_string(v));
}

void set_lr(torch::optim::Adam& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
}

struct Labels {
  torch::Tensor y;          // [N] int64
  int64_t num_classes = 0;
  nlohmann::json info;      // what goes on the card
};

Labels make_labels(const TrainOptions& o, const Dataset& fit) {
  Labels l;
  if (parse_task(o.task()) == TaskKind::kAttribute && o.attribute() == "thickness") {
    auto t = stroke_thickness(fit.images);
    auto sorted = std::get<0>(t.sort());
    const int64_t n = sorted.size(0);
    const double lo = sorted[n / 3].item<double>(), hi = sorted[2 * n / 3].item<double>();
    l.y = thickness_class(t, lo, hi);
    l.num_classes = 3;
    l.info = {{"attribute", "thickness"},
              {"classes", {"thin", "medium", "thick"}},
              {"tercile_boundaries", {lo, hi}},
              {"measure", "ebm::stroke_thickness (threshold 0.5)"}};
    return l;
  }
  const TaskKind task = parse_task(o.task());
  if (task == TaskKind::kAttribute && o.attribute() != "digit")
    throw UsageError("unknown attribute '" + o.attribute() + "' (use digit or thickness)");
  if (is_classifier_task(task) && !fit.labels.defined())
    throw UsageError("task " + o.task() + " needs labels, and dataset '" + o.data() + "' has none");
  if (fit.labels.defined()) {
    l.y = fit.labels;
    l.num_classes = fit.num_classes;
    if (task == TaskKind::kAttribute) {
      l.info = {{"attribute", "digit"}, {"classes", {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}}};
    }
  }
  return l;
}

nlohmann::json default_arch(const TrainOptions& o, int64_t num_classes) {
  if (!o.arch().is_null() && !o.arch().empty()) {
    auto a = o.arch();
    if (a.value("type", "") == "conv-classifier" && !a.contains("num_classes")) a["num_classes"] = num_classes;
    return a;
  }
  if (o.width() <= 0) throw UsageError("--width must be > 0, got " + std::to_string(o.width()));
  const std::string type = !o.arch_type().empty()                       ? o.arch_type()
                           : is_classifier_task(parse_task(o.task())) ? "conv-classifier"
                                                            : "conv-ebm";
  if (type != "conv-classifier" && type != "conv-ebm" && type != "conv-ebm-nc" && type != "unet-ebm-nc")
    throw UsageError("--arch must be conv-ebm, conv-ebm-nc, unet-ebm-nc or conv-classifier, got '" + type + "'");
  nlohmann::json a{{"type", type}, {"width", o.width()}};
  if (type == "conv-ebm-nc" || type == "unet-ebm-nc") {
    if (parse_task(o.task()) != TaskKind::kDsm)
      throw UsageError("--arch " + type + " (a noise-conditional energy) is trained by --task dsm only");
    // energy(x) without a level is the energy at the smallest trained sigma.
    a["sigma_min"] = *std::min_element(o.dsm_sigmas().begin(), o.dsm_sigmas().end());
  }
  if (type == "conv-classifier") a["num_classes"] = num_classes;
  if (!o.activation().empty()) {
    if (type != "conv-classifier") throw UsageError("--activation applies to conv-classifier only");
    a["activation"] = o.activation();
  }
  return a;
}

void validate(const TrainOptions& o) {
  const TaskKind task = parse_task(o.task());
  if (o.out().empty()) throw UsageError("--out is required");
  if (o.steps() <= 0) throw UsageError("--steps must be > 0, got " + std::to_string(o.steps()));
  if (o.batch() <= 1) throw UsageError("--batch must be > 1, got " + std::to_string(o.batch()));
  if (!(o.lr() > 0)) throw UsageError("--lr must be > 0, got " + std::to_string(o.lr()));
  if (!(o.ema() >= 0 && o.ema() < 1)) throw UsageError("--ema must be in [0, 1), got " + std::to_string(o.ema()));
  if (!(o.reinit() >= 0 && o.reinit() <= 1)) throw UsageError("--reinit must be in [0,1], got " + std::to_string(o.reinit()));
  if (task == TaskKind::kDsm && o.dsm_sigmas().empty()) throw UsageError("--dsm-sigmas needs at least one value");
  for (double s : o.dsm_sigmas())
    if (!(s > 0)) throw UsageError("--dsm-sigmas values must be > 0, got " + std::to_string(s));
  if (o.lr_schedule() != "constant" && o.lr_schedule() != "cosine")
    throw UsageError("--lr-schedule must be constant or cosine, got '" + o.lr_schedule() + "'");
  if (o.augment_shift() < 0 || o.augment_shift() > 8)
    throw UsageError("--augment-shift must be in 0..8, got " + std::to_string(o.augment_shift()));
  if (!(o.noise_augment() >= 0 && o.noise_augment() <= 1))
    throw UsageError("--noise-augment must be in [0, 1], got " + std::to_string(o.noise_augment()));
  for (double v : o.noise_augment_sigmas())
    if (!(v > 0 && v <= 10)) throw UsageError("--noise-augment-sigmas values must be in (0, 10], got " + std::to_string(v));
  if (!o.noise_augment_sigmas().empty() && !is_classifier_task(task))
    throw UsageError("--noise-augment-sigmas applies to classifier tasks (clf, jem, attribute, energy-finetune)");
  if (task == TaskKind::kEnergyFinetune && o.init().empty())
    throw UsageError("task energy-finetune needs --init CLASSIFIER");
  if (!o.purify_augment().empty() && !is_classifier_task(task))
    throw UsageError("--purify-augment applies to classifier tasks, not '" + o.task() + "'");
  check_unit_interval("--purify-fraction", o.purify_fraction());
  if (o.purify_attack_eps() != 0 && o.purify_augment().empty())
    throw UsageError("--purify-attack-eps needs --purify-augment (the attacked images are then purified)");
  check_unit_interval("--purify-attack-eps", o.purify_attack_eps());
  check_unit_interval("--purify-attack-fraction", o.purify_attack_fraction());
  if (o.adv_eps() != 0 && !is_classifier_task(task))
    throw UsageError("--adv-eps applies to classifier tasks, not '" + o.task() + "'");
  check_unit_interval("--adv-eps", o.adv_eps());
  check_unit_interval("--adv-fraction", o.adv_fraction());
  if (o.adv_eps() > 0 && o.adv_steps() < 1)
    throw UsageError("--adv-steps must be >= 1, got " + std::to_string(o.adv_steps()));
  if (o.purify_attack_eps() > 0 && o.purify_attack_steps() < 1)
    throw UsageError("--purify-attack-steps must be >= 1, got " + std::to_string(o.purify_attack_steps()));
  if (o.buffer_init() != "uniform" && o.buffer_init() != "gaussian")
    throw UsageError("--buffer-init must be uniform or gaussian, got '" + o.buffer_init() + "'");
  if (!o.init().empty() && task == TaskKind::kEbm)
    throw UsageError("--init (warm start) applies to --task clf, jem, attribute, energy-finetune and dsm, not '" +
                     o.task() + "'");
  check_dist_options(o.dist());
  if (o.batch() % o.dist().world_size() != 0)
    throw UsageError("--batch (the global batch) must be a multiple of --world-size " +
                     std::to_string(o.dist().world_size()) + ", got " + std::to_string(o.batch()));
  if (o.batch() / o.dist().world_size() < 1)
    throw UsageError("--batch must give each rank at least one image");
}

/// Everything a resumed run needs, saved atomically as one archive. With W > 1
/// ranks, every rank's replay buffer and generator are gathered and rank 0
/// writes them all ("buffer_r<k>", "local_gen_r<k>", "world_size").
struct Checkpoint {
  static void save(const std::string& path, NativeModel& m, torch::optim::Adam& opt, ReplayBuffer* buf,
                   at::Generator& gen, at::Generator& lgen, Communicator& comm, int64_t step, double lr,
                   int64_t rollbacks, double m_in, double m_out, double wall, const std::vector<torch::Tensor>& ema) {
    torch::Tensor bufs, lgens;  // [W,...] (collectives: every rank takes part)
    if (comm.distributed()) {
      if (buf) bufs = comm.allgather(buf->data());
      lgens = comm.allgather(lgen.get_state());
      if (comm.rank() != 0) return;
    }
    torch::serialize::OutputArchive ar, mar, oar;
    m.module()->save(mar);
    opt.save(oar);
    ar.write("model", mar);
    ar.write("optim", oar);
    if (comm.distributed()) {
      ar.write("world_size", torch::tensor({comm.world_size()}, torch::kInt64));
      for (int64_t r = 0; r < comm.world_size(); ++r) {
        if (buf) ar.write("buffer_r" + std::to_string(r), bufs[r]);
        ar.write("local_gen_r" + std::to_string(r), lgens[r]);
      }
    } else if (buf) {
      ar.write("buffer", buf->data());
    }
    for (size_t i = 0; i < ema.size(); ++i) ar.write("ema_" + std::to_string(i), ema[i]);
    ar.write("gen_state", gen.get_state());
    ar.write("meta", torch::tensor({double(step), lr, double(rollbacks), m_in, m_out, wall}, torch::kFloat64));
    std::ostringstream os;
    ar.save_to(os);
    write_file_atomic(path, os.str());
  }
  static void load(const std::string& path, NativeModel& m, torch::optim::Adam& opt, ReplayBuffer* buf,
                   at::Generator& gen, at::Generator& lgen, const Communicator& comm, int64_t* step, double* lr,
                   int64_t* rollbacks, double* m_in, double* m_out, double* wall, std::vector<torch::Tensor>& ema) {
    torch::serialize::InputArchive ar, mar, oar;
    try {
      ar.load_from(path);
      torch::Tensor ws;
      const int64_t saved_w = ar.try_read("world_size", ws) ? ws.item<int64_t>() : 1;
      if (saved_w != comm.world_size())
        throw DataError("'" + path + "' was written by " + std::to_string(saved_w) +
                        " rank(s); resume it with --world-size " + std::to_string(saved_w) + ", not " +
                        std::to_string(comm.world_size()));
      ar.read("model", mar);
      ar.read("optim", oar);
      m.module()->load(mar);
      opt.load(oar);
      if (comm.distributed()) {
        const std::string r = std::to_string(comm.rank());
        if (buf) ar.read("buffer_r" + r, buf->data());
        torch::Tensor ls;
        ar.read("local_gen_r" + r, ls);
        lgen.set_state(ls);
      } else if (buf) {
        ar.read("buffer", buf->data());
      }
      for (size_t i = 0; i < ema.size(); ++i) {
        torch::Tensor t;
        if (!ar.try_read("ema_" + std::to_string(i), t))
          throw DataError("'" + path + "' has no weight average; resume it without --ema, or start afresh");
        ema[i].copy_(t);
      }
      torch::Tensor st, meta;
      ar.read("gen_state", st);
      gen.set_state(st);
      ar.read("meta", meta);
      auto a = meta.accessor<double, 1>();
      *step = int64_t(a[0]);
      *lr = a[1];
      *rollbacks = int64_t(a[2]);
      *m_in = a[3];
      *m_out = a[4];
      *wall = meta.size(0) > 5 ? a[5] : 0.0;  // wall seconds of the runs before this one
    } catch (const c10::Error& e) {
      throw DataError("'" + path + "': cannot resume from this checkpoint: " +
                      std::string(e.what_without_backtrace()).substr(0, 300));
    }
  }
};

}  // namespace

TrainResult train(const TrainOptions& o) {
  validate(o);
  Communicator comm(o.dist());  // world size 1: no process group, every collective the identity
  const int64_t world = comm.world_size(), local_batch = o.batch() / world, offset = comm.rank() * local_batch;
  if (comm.rank() > 0) Progress::set_quiet(true);  // one progress line per run, rank 0's
  const auto task = make_task(o);
  const TaskKind kind = task->kind();
  const auto t0 = std::chrono::steady_clock::now();

  DatasetOptions dopt;
  dopt.split = "fit";
  Dataset fit = load_dataset(o.data(), dopt);
  Labels labels = make_labels(o, fit);

  torch::manual_seed(o.seed());  // weight initialisation
  std::shared_ptr<NativeModel> model;
  if (!o.init().empty()) {
    // Warm start (e.g. a JEM from a trained classifier, or a longer DSM run
    // from a shorter one): weights only; optimiser, buffer and schedule start fresh.
    auto init = std::dynamic_pointer_cast<NativeModel>(load_model(o.init()));
    if (kind == TaskKind::kDsm) {
      if (!init || init->num_classes() != 0)
        throw UsageError("--init '" + o.init() + "' must be a native energy model (no classes) for --task dsm");
    } else if (!init || init->num_classes() == 0) {
      throw UsageError("--init '" + o.init() + "' must be a native classifier model");
    }
    model = init;
  } else {
    model = std::make_shared<NativeModel>(default_arch(o, labels.num_classes));
  }
  model->set_training(true);
  if (is_classifier_task(kind) && model->num_classes() != labels.num_classes)
    throw UsageError("model has " + std::to_string(model->num_classes()) + " classes but the labels have " +
                     std::to_string(labels.num_classes));

  const Augmentation augment(o);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(o.lr()).betas({o.beta1(), o.beta2()}));
  // `gen` draws what every rank must agree on (the global batch, dsm noise) and
  // is in the same state on every rank; `lgen` draws what is each rank's own
  // (augmentation, replay buffer, Langevin, outliers). One process: the same generator.
  auto gen = at::detail::createCPUGenerator(o.seed());
  const uint64_t local_seed = o.seed() + 1000003ULL * uint64_t(comm.rank() + 1);
  auto lgen_own = at::detail::createCPUGenerator(local_seed);
  at::Generator& lgen = comm.distributed() ? lgen_own : gen;
  std::unique_ptr<ReplayBuffer> buffer;
  if (uses_replay_buffer(kind)) {
    const std::vector<int64_t> shape{1, 28, 28};
    StartSampler starts = o.buffer_init() == "gaussian" ? gaussian_starts(fit.images, labels.y) : uniform_starts(shape);
    buffer = std::make_unique<ReplayBuffer>(o.buffer_size(), shape, lgen, starts);
  }

  if (comm.rank() == 0) make_dirs(o.out());
  const std::string ckpt = o.out() + "/checkpoint.pt";

  int64_t step = 0, rollbacks = 0;
  double lr = o.lr(), wall_before = 0.0;
  task->m_in = o.m_in(), task->m_out = o.m_out();
  auto wall_now = [&] {
    return wall_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // The weight average (--ema); a resumed run reads it from the checkpoint.
  std::vector<torch::Tensor> ema;
  if (o.ema() > 0)
    for (const auto& p : model->parameters()) ema.push_back(p.detach().clone());
  if (o.resume()) {
    if (!path_exists(ckpt)) throw UsageError("--resume: no checkpoint at '" + ckpt + "'");
    Checkpoint::load(ckpt, *model, opt, buffer.get(), gen, lgen, comm, &step, &lr, &rollbacks, &task->m_in,
                     &task->m_out, &wall_before, ema);
    if (comm.rank() == 0) std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.c_str(), (long long)step);
  } else if (kind == TaskKind::kEnergyFinetune && (std::isnan(task->m_in) || std::isnan(task->m_out))) {
    // Margins from data (as the energy-OOD authors suggest): the initial
    // model's mean energies on in-distribution and on synthetic outliers.
    torch::NoGradGuard ng;
    auto xs = fit.images.narrow(0, 0, std::min<int64_t>(1000, fit.size()));
    const double ein = model->energy(xs).mean().item<double>();
    const double eout = model->energy(synthesize_outliers(xs, gen)).mean().item<double>();
    if (std::isnan(task->m_in)) task->m_in = ein;
    if (std::isnan(task->m_out)) task->m_out = std::max(eout, ein + 1.0);
    if (comm.rank() == 0) std::fprintf(stderr, "energy-finetune margins from data: m_in %.3f, m_out %.3f\n", task->m_in, task->m_out);
  }
  const int64_t start_step = step;
  // Every rank starts from rank 0's weights (they agree already when built
  // from one seed or file; this makes it so whatever the path).
  comm.broadcast(model->parameters());
  // A fresh weight average starts from the weights every rank now agrees on.
  if (!o.resume() && !ema.empty()) {
    const auto params = model->parameters();
    for (size_t i = 0; i < ema.size(); ++i) ema[i].copy_(params[i].detach());
  }

  LangevinOptions sg;
  sg.steps(o.sgld_steps()).step_size(o.sgld_step()).noise(o.sgld_noise()).grad_clip(o.sgld_grad_clip());

  Progress bar(std::string("train ") + task_name(kind), o.steps(), 10.0, step);
  double last_loss = 0;
  torch::Tensor last_neg;
  bool faulted = false;
  while (step < o.steps()) {
    double factor = o.warmup() > 0 ? std::min(1.0, double(step + 1) / double(o.warmup())) : 1.0;
    if (o.lr_schedule() == "cosine" && step >= o.warmup())
      factor = 0.5 * (1.0 + std::cos(M_PI * double(step - o.warmup()) / double(std::max<int64_t>(1, o.steps() - o.warmup()))));
    set_lr(opt, lr * factor);
    // The global batch's indices, then this rank's rows of it.
    const auto idx = torch::randint(fit.size(), {o.batch()}, gen, torch::kInt64).narrow(0, offset, local_batch);
    TaskBatch b;
    b.y = labels.y.defined() ? labels.y.index_select(0, idx) : torch::Tensor();
    b.x = augment.apply(*model, fit.images.index_select(0, idx), b.y, step, lgen);
    b.offset = offset;
    b.global_n = o.batch();
    b.shared = &gen;
    torch::Tensor bidx;
    if (task->wants_negatives()) {
      auto start = buffer->sample(local_batch, o.reinit(), lgen, &bidx);
      model->set_training(false);
      b.neg = langevin(*model, start, sg, {}, &lgen).x;
      model->set_training(true);
      last_neg = b.neg;
    }
    const TaskLoss tl = task->loss(*model, b, lgen);

    // Divergence guard: a non-finite loss or runaway energies roll back to the
    // last checkpoint with half the learning rate.
    double lv = tl.loss.item<double>();
    if (step == o.fault_step() && !faulted) {
      lv = std::nan("");
      faulted = true;
    }
    double emax = tl.e_pos.defined() ? tl.e_pos.abs().max().item<double>() : 0;
    if (tl.e_neg.defined()) emax = std::max(emax, tl.e_neg.abs().max().item<double>());
    double gap = (tl.e_pos.defined() && tl.e_neg.defined())
                     ? std::abs(tl.e_pos.mean().item<double>() - tl.e_neg.mean().item<double>())
                     : 0;
    if (comm.distributed()) {
      // One decision for all ranks: the worst rank's figures (NaN travels as +inf).
      auto fin = [](double v) { return std::isfinite(v) ? v : HUGE_VAL; };
      const auto w = comm.max(torch::tensor({std::isfinite(lv) ? 0.0 : 1.0, fin(emax), fin(gap)}, torch::kFloat64));
      const auto a = w.accessor<double, 1>();
      if (a[0] > 0) lv = std::nan("");
      emax = a[1];
      gap = a[2];
    }
    if (!std::isfinite(lv) || !std::isfinite(emax) || emax > o.energy_limit() || gap > o.gap_limit()) {
      ++rollbacks;
      std::fprintf(stderr, "\ndivergence at step %lld (loss %g, max |E| %g, E+/E- gap %g); rollback %lld/%lld\n",
                   (long long)step, lv, emax, gap, (long long)rollbacks, (long long)o.max_rollbacks());
      if (rollbacks > o.max_rollbacks() || !path_exists(ckpt))
        throw DivergenceError("training diverged at step " + std::to_string(step) +
                              (path_exists(ckpt) ? " after " + std::to_string(o.max_rollbacks()) + " rollbacks"
                                                 : " before the first checkpoint") +
                              "; try a lower --lr, more --sgld-steps or a larger --l2. No final model was saved.");
      int64_t rb = rollbacks;
      double lr_saved, wall_ignored;
      Checkpoint::load(ckpt, *model, opt, buffer.get(), gen, lgen, comm, &step, &lr_saved, &rb, &task->m_in,
                       &task->m_out, &wall_ignored, ema);
      lr = lr_saved * 0.5;
      gen.set_current_seed(o.seed() + 7919 * uint64_t(rollbacks));  // a new path after the rollback
      if (comm.distributed()) lgen.set_current_seed(local_seed + 7919 * uint64_t(rollbacks));
      continue;
    }

    opt.zero_grad();
    tl.loss.backward();
    comm.average_gradients(model->parameters());  // W = 1: nothing
    if (o.clip_grad_norm() > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), o.clip_grad_norm());
    opt.step();
    if (!ema.empty()) {
      torch::NoGradGuard ng;
      const auto params = model->parameters();
      for (size_t i = 0; i < ema.size(); ++i) ema[i].mul_(o.ema()).add_(params[i].detach(), 1.0 - o.ema());
    }
    if (buffer && b.neg.defined()) buffer->update(bidx, b.neg);
    ++step;

    last_loss = lv;
    char status[160];
    std::snprintf(status, sizeof status, "loss %.4f E+ %.3f E- %.3f%s", lv,
                  tl.e_pos.defined() ? tl.e_pos.mean().item<double>() : 0.0,
                  tl.e_neg.defined() ? tl.e_neg.mean().item<double>() : 0.0,
                  std::isnan(tl.accuracy) ? "" : (" acc " + std::to_string(tl.accuracy).substr(0, 5)).c_str());
    bar.update(step, status);

    if (comm.rank() == 0 && o.sample_every() > 0 && last_neg.defined() && step % o.sample_every() == 0) {
      make_dirs(o.out() + "/samples");
      char name[64];
      std::snprintf(name, sizeof name, "/samples/step_%06lld.png", (long long)step);
      write_png_grid(o.out() + name, last_neg.narrow(0, 0, std::min<int64_t>(64, last_neg.size(0))));
    }
    const bool stop_now = o.stop_after() >= 0 && step - start_step >= o.stop_after();
    if (step % o.checkpoint_every() == 0 || step == o.steps() || stop_now)
      Checkpoint::save(ckpt, *model, opt, buffer.get(), gen, lgen, comm, step, lr, rollbacks, task->m_in, task->m_out,
                       wall_now(), ema);
    if (stop_now && step < o.steps()) {
      bar.finish("stopped early (--stop-after); resume with --resume");
      TrainResult r;
      r.steps = step;
      r.rollbacks = rollbacks;
      return r;
    }
  }
  bar.finish(std::string("loss ") + std::to_string(last_loss));
  const double wall = wall_now();
  const double wall_this_run = wall - wall_before;
  if (comm.rank() != 0) {  // rank 0 writes the model and its card
    TrainResult r;
    r.steps = step;
    r.rollbacks = rollbacks;
    return r;
  }

  // ------------------------------------------------------------ the card
  nlohmann::json opts{{"steps", o.steps()}, {"batch", o.batch()}, {"lr", o.lr()}, {"lr_schedule", o.lr_schedule()},
                      {"augment_shift", o.augment_shift()}, {"beta1", o.beta1()},
                      {"beta2", o.beta2()}, {"warmup", o.warmup()}, {"clip_grad_norm", o.clip_grad_norm()},
                      {"data_noise", o.data_noise()}, {"noise_augment", o.noise_augment()}};
  if (!o.noise_augment_sigmas().empty()) opts["noise_augment_sigmas"] = o.noise_augment_sigmas();
  if (uses_replay_buffer(kind))
    opts.update({{"buffer_size", o.buffer_size()}, {"buffer_init", o.buffer_init()}, {"reinit", o.reinit()}, {"sgld_steps", o.sgld_steps()},
                 {"sgld_step", o.sgld_step()}, {"sgld_noise", o.sgld_noise()},
                 {"sgld_grad_clip", o.sgld_grad_clip()}, {"l2", o.l2()}, {"gen_weight", o.gen_weight()}});
  if (!o.init().empty()) opts["init"] = o.init();
  if (o.ema() > 0) opts["ema"] = o.ema();
  augment.card_options(opts);
  task->card_options(opts);
  nlohmann::json card = {{"task", task_name(kind)}, {"data", o.data()}, {"train_split", "fit"}, {"command", o.command()},
                         {"seed", o.seed()}, {"steps", step}, {"wall_seconds", wall},
                         {"resumed_from_step", start_step},
                         {"images_per_second", wall_this_run > 0 ? double((step - start_step) * o.batch()) / wall_this_run : 0.0},
                         {"rollbacks", rollbacks}, {"final_lr", lr}, {"options", opts},
                         {"ebmkit_version", version()}};
  task->card_fields(card);
  if (!labels.info.is_null()) card["attribute"] = labels.info;
  // How composition reads E(x|c) (compose.h, ClassEnergy): a JEM-trained model's
  // logit -f(x)[c]; a purely discriminative one's -log p(c|x), to which
  // composition adds an unconditional prior.
  if (kind == TaskKind::kAttribute) card["class_energy"] = o.gen_weight() > 0 ? "logit" : "nll";
  if (comm.distributed())
    card["distributed"] = {{"world_size", world}, {"backend", "gloo"}, {"local_batch", local_batch},
                           {"gradient_allreduce_seconds_per_step",
                            comm.grad_reductions() > 0 ? comm.grad_seconds() / double(comm.grad_reductions()) : 0.0}};

  if (!ema.empty()) {  // the saved model (and its metrics) is the weight average
    torch::NoGradGuard ng;
    const auto params = model->parameters();
    for (size_t i = 0; i < ema.size(); ++i) params[i].copy_(ema[i]);
  }

  // ------------------------------------------------------------ end-of-run metrics (val split; test is `ebm eval`'s)
  ModelEvalOptions eo;
  eo.split = "val";
  eo.n = o.eval_n();
  eo.seed = o.seed();
  eo.samples_png = o.out() + "/samples.png";
  card["metrics"] = evaluate_model(*model, card, eo);
  card["metrics_split"] = "val";
  model->set_card(std::move(card));
  save_model(o.out(), *model);
  TrainResult r;
  r.card = model->card();
  r.steps = step;
  r.rollbacks = rollbacks;
  return r;
}

}  // namespace ebm
