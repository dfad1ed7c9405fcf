// tasks.cpp: one class per training task (see tasks.h and train.h).
#include "ebm/train/tasks.h"

#include <torch/torch.h>

#include "ebm/core/common.h"

namespace ebm {

namespace {

struct TaskName {
  TaskKind kind;
  const char* name;
};
constexpr TaskName kTasks[] = {{TaskKind::kClf, "clf"},           {TaskKind::kEbm, "ebm"},
                               {TaskKind::kJem, "jem"},           {TaskKind::kAttribute, "attribute"},
                               {TaskKind::kDsm, "dsm"},           {TaskKind::kEnergyFinetune, "energy-finetune"}};

// Unconditional EBM by persistent contrastive divergence.
class EbmTask : public Task {
 public:
  using Task::Task;
  TaskKind kind() const override { return TaskKind::kEbm; }
  bool wants_negatives() const override { return true; }
  TaskLoss loss(Energy& m, const TaskBatch& b, at::Generator&) override {
    TaskLoss r;
    r.e_pos = m.energy(b.x);
    r.e_neg = m.energy(b.neg);
    r.loss = pcd_loss(r.e_pos, r.e_neg, o_.l2());
    return r;
  }
};

// Cross-entropy, plus (jem, attribute with gen_weight > 0) PCD on the free energy.
class ClassifierTask : public Task {
 public:
  ClassifierTask(const TrainOptions& o, TaskKind k) : Task(o), kind_(k) {}
  TaskKind kind() const override { return kind_; }
  bool wants_negatives() const override { return kind_ != TaskKind::kClf && o_.gen_weight() > 0; }
  TaskLoss loss(Energy& m, const TaskBatch& b, at::Generator&) override {
    TaskLoss r;
    auto logits = m.logits(b.x);
    r.loss = torch::nn::functional::cross_entropy(logits, b.y);
    r.accuracy = (logits.argmax(1) == b.y).to(torch::kFloat32).mean().item<double>();
    r.e_pos = free_energy(logits);
    if (b.neg.defined()) {
      r.e_neg = m.energy(b.neg);
      r.loss = r.loss + o_.gen_weight() * pcd_loss(r.e_pos, r.e_neg, o_.l2());
    }
    return r;
  }

 private:
  TaskKind kind_;
};

// Denoising score matching at a noise level drawn per image from dsm_sigmas.
class DsmTask : public Task {
 public:
  using Task::Task;
  TaskKind kind() const override { return TaskKind::kDsm; }
  TaskLoss loss(Energy& m, const TaskBatch& b, at::Generator& gen) override {
    // Drawn for the whole global batch, so that W ranks see the noise one process would.
    at::Generator& g = b.shared ? *b.shared : gen;
    const int64_t n = b.x.size(0), ng = b.global_n > 0 ? b.global_n : n;
    auto sig_idx = torch::randint(int64_t(o_.dsm_sigmas().size()), {ng}, g, torch::kInt64).narrow(0, b.offset, n);
    auto sig = torch::tensor(o_.dsm_sigmas(), torch::kFloat64).to(torch::kFloat32).index_select(0, sig_idx);
    auto shape = b.x.sizes().vec();
    shape[0] = ng;
    auto eps = torch::randn(shape, g).narrow(0, b.offset, n);
    TaskLoss r;
    r.loss = dsm_loss(m, b.x, sig, eps, o_.dsm_clip());
    return r;
  }
  void card_options(nlohmann::json& opts) const override {
    opts.update({{"dsm_sigmas", o_.dsm_sigmas()}, {"dsm_clip", o_.dsm_clip()}});
  }
};

// Energy-bounded fine-tuning with outliers synthesised from the batch.
class EnergyFinetuneTask : public Task {
 public:
  using Task::Task;
  TaskKind kind() const override { return TaskKind::kEnergyFinetune; }
  TaskLoss loss(Energy& m, const TaskBatch& b, at::Generator& gen) override {
    TaskLoss r;
    auto logits = m.logits(b.x);
    auto xo = synthesize_outliers(b.x, gen, o_.outliers());
    r.e_pos = free_energy(logits);
    r.e_neg = m.energy(xo);
    r.loss = torch::nn::functional::cross_entropy(logits, b.y) + o_.ft_weight() * energy_bound_loss(r.e_pos, r.e_neg, m_in, m_out);
    r.accuracy = (logits.argmax(1) == b.y).to(torch::kFloat32).mean().item<double>();
    return r;
  }
  void card_options(nlohmann::json& opts) const override {
    opts.update({{"m_in", m_in}, {"m_out", m_out}, {"ft_weight", o_.ft_weight()}, {"outliers", o_.outliers()}});
  }
  void card_fields(nlohmann::json& card) const override {
    // The OOD test sets these outliers share a generator with (ood.h's seen_in_training).
    card["ood_seen"] = outlier_test_sets(o_.outliers());
  }
};

}  // namespace

TaskKind parse_task(const std::string& name) {
  for (const auto& t : kTasks)
    if (name == t.name) return t.kind;
  throw UsageError("unknown task '" + name + "' (use clf, ebm, jem, attribute, dsm or energy-finetune)");
}

const char* task_name(TaskKind kind) {
  for (const auto& t : kTasks)
    if (t.kind == kind) return t.name;
  return "?";
}

bool is_classifier_task(TaskKind k) {
  return k == TaskKind::kClf || k == TaskKind::kJem || k == TaskKind::kAttribute || k == TaskKind::kEnergyFinetune;
}

bool uses_replay_buffer(TaskKind k) { return k == TaskKind::kEbm || k == TaskKind::kJem || k == TaskKind::kAttribute; }

std::unique_ptr<Task> make_task(const TrainOptions& o) {
  switch (const TaskKind k = parse_task(o.task())) {
    case TaskKind::kEbm: return std::make_unique<EbmTask>(o);
    case TaskKind::kClf:
    case TaskKind::kJem:
    case TaskKind::kAttribute: return std::make_unique<ClassifierTask>(o, k);
    case TaskKind::kDsm: return std::make_unique<DsmTask>(o);
    case TaskKind::kEnergyFinetune: return std::make_unique<EnergyFinetuneTask>(o);
  }
  throw UsageError("unknown task '" + o.task() + "'");
}

}  // namespace ebm
