// tasks.h: the training tasks as objects. Each task is a loss on a prepared
// batch plus what it adds to the model card; train() (train.h) owns the loop
// around them (data, augmentation, optimiser, replay buffer, divergence guard,
// checkpoints, end-of-run metrics). Task names are parsed once, here.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cmath>
#include <memory>
#include <string>

#include "ebm/core/energy.h"
#include "ebm/train/train.h"

namespace ebm {

enum class TaskKind { kClf, kEbm, kJem, kAttribute, kDsm, kEnergyFinetune };

/// "clf" | "ebm" | "jem" | "attribute" | "dsm" | "energy-finetune"; UsageError listing them otherwise.
TaskKind parse_task(const std::string& name);
/// The name parse_task() reads.
const char* task_name(TaskKind kind);
/// Tasks that train a classifier (logits; labels required): clf, jem, attribute, energy-finetune.
bool is_classifier_task(TaskKind kind);
/// Tasks that keep a replay buffer of Langevin negatives: ebm, jem, attribute.
bool uses_replay_buffer(TaskKind kind);

/// One prepared batch.
struct TaskBatch {
  torch::Tensor x;    ///< [B,1,H,W] augmented images
  torch::Tensor y;    ///< [B] int64 labels (undefined for unlabelled data)
  torch::Tensor neg;  ///< [B,1,H,W] Langevin negatives (undefined unless wants_negatives())
  /// Data parallelism (distributed.h): this batch is rows [offset, offset+B)
  /// of a global batch of global_n rows spread over the ranks. Per-image noise
  /// that must not depend on the number of ranks (dsm's sigma and eps) is drawn
  /// for all global_n rows from `shared`, the generator every rank holds in the
  /// same state, and this rank's rows are kept. One process: offset 0,
  /// global_n = B, shared = the loop's generator.
  int64_t offset = 0;
  int64_t global_n = 0;  ///< 0 = B
  at::Generator* shared = nullptr;  ///< nullptr = the generator passed to loss()
};

/// What a task computed on a batch.
struct TaskLoss {
  torch::Tensor loss;   ///< scalar, differentiable in the parameters
  torch::Tensor e_pos;  ///< [B] energies of the data (undefined for dsm): watched by the divergence guard
  torch::Tensor e_neg;  ///< [B] energies of negatives or outliers (undefined when none)
  double accuracy = std::nan("");  ///< training-batch accuracy of classifier tasks
};

class Task {
 public:
  explicit Task(const TrainOptions& o) : o_(o) {}
  virtual ~Task() = default;
  virtual TaskKind kind() const = 0;
  /// Whether this step needs Langevin negatives from the replay buffer.
  virtual bool wants_negatives() const { return false; }
  /// The loss on one batch; randomness (noise levels, outliers) from `gen`.
  virtual TaskLoss loss(Energy& model, const TaskBatch& b, at::Generator& gen) = 0;
  /// The task's entries of the card's "options".
  virtual void card_options(nlohmann::json& opts) const { (void)opts; }
  /// The task's top-level card fields (e.g. energy-finetune's "ood_seen").
  virtual void card_fields(nlohmann::json& card) const { (void)card; }

  /// energy-finetune's margins (NaN = from data); saved in checkpoints.
  double m_in = std::nan(""), m_out = std::nan("");

 protected:
  TrainOptions o_;
};

/// The task o.task() names, configured from o.
std::unique_ptr<Task> make_task(const TrainOptions& o);

}  // namespace ebm
