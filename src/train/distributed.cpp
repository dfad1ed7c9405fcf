// distributed.cpp: the c10d process group behind Communicator (distributed.h).
#include "ebm/train/distributed.h"

#include <torch/torch.h>

// Debian's libtorch is built with Gloo; its header hides the class unless asked.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>

#include "ebm/core/common.h"

namespace ebm {

std::pair<std::string, int> parse_master(const std::string& master) {
  const auto colon = master.rfind(':');
  if (master.empty() || colon == std::string::npos || colon == 0 || colon + 1 == master.size())
    throw UsageError("--master must be HOST:PORT (e.g. 127.0.0.1:29500), got '" + master + "'");
  const std::string host = master.substr(0, colon), port_s = master.substr(colon + 1);
  int port = 0;
  for (char ch : port_s) {
    if (ch < '0' || ch > '9' || port > 65535) {
      port = -1;
      break;
    }
    port = port * 10 + (ch - '0');
  }
  if (port <= 0 || port > 65535) throw UsageError("--master port must be in 1..65535, got '" + port_s + "'");
  return {host, port};
}

void check_dist_options(const DistOptions& o) {
  if (o.world_size() < 1) throw UsageError("--world-size must be >= 1, got " + std::to_string(o.world_size()));
  if (o.rank() < 0 || o.rank() >= o.world_size())
    throw UsageError("--rank must be in [0, " + std::to_string(o.world_size()) + "), got " + std::to_string(o.rank()));
  if (!(o.timeout() > 0)) throw UsageError("--dist-timeout must be > 0 seconds, got " + std::to_string(o.timeout()));
  if (o.bucket_bytes() < 1024) throw UsageError("bucket size must be >= 1024 bytes, got " + std::to_string(o.bucket_bytes()));
  if (o.world_size() > 1) parse_master(o.master());
}

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout{30000};
};

namespace {

std::string first_line(const std::string& s) {
  auto line = s.substr(0, s.find('\n'));
  return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

// Run one collective; any failure (a peer closed its connection, a timeout)
// becomes a DistributedError that names this rank and the operation.
template <class F>
void guarded(int64_t rank, double timeout_s, const char* what, F&& f) {
  try {
    f();
  } catch (const DistributedError&) {
    throw;
  } catch (const std::exception& e) {
    const std::string msg = dynamic_cast<const c10::Error*>(&e)
                                ? static_cast<const c10::Error&>(e).what_without_backtrace()
                                : e.what();
    throw DistributedError("rank " + std::to_string(rank) + ": " + what +
                           " failed: another rank exited or did not answer within " +
                           std::to_string(int(timeout_s)) + " s (" + first_line(msg) + ")");
  }
}

}  // namespace

Communicator::Communicator(const DistOptions& o) : o_(o) {
  check_dist_options(o);
  if (!distributed()) return;
  impl_ = std::make_unique<Impl>();
  impl_->timeout = std::chrono::milliseconds(int64_t(o.timeout() * 1000));
  const auto [host, port] = parse_master(o.master());
  guarded(o.rank(), o.timeout(), "rendezvous", [&] {
    c10d::TCPStoreOptions so;
    so.port = uint16_t(port);
    so.isServer = o.rank() == 0;
    so.numWorkers = size_t(o.world_size());
    so.waitWorkers = true;
    so.timeout = impl_->timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(host, so);
    auto opts = c10d::ProcessGroupGloo::Options::create(impl_->timeout);
    // The Gloo device binds to this machine's address: an interface named in
    // $EBM_GLOO_IFNAME (multi-machine runs), loopback when the master is on
    // loopback, else the address the hostname resolves to.
    if (const char* ifname = std::getenv("EBM_GLOO_IFNAME"); ifname && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (host == "localhost" || host.rfind("127.", 0) == 0)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 1;  // one collective in flight per step is all the trainer issues
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, int(o.rank()), int(o.world_size()), opts);
  });
}

Communicator::~Communicator() = default;

double Communicator::average_gradients(const std::vector<torch::Tensor>& params) {
  if (!distributed()) return 0.0;
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard ng;
  // Buckets of consecutive parameters, each at most bucket_bytes (a parameter
  // larger than that is a bucket of its own). The layout depends only on the
  // parameter shapes, so every rank forms the same buckets.
  std::vector<std::vector<size_t>> buckets(1);
  int64_t bytes = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t b = params[i].numel() * int64_t(params[i].element_size());
    if (!buckets.back().empty() && bytes + b > o_.bucket_bytes()) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += b;
  }
  std::vector<torch::Tensor> flat;
  std::vector<c10::intrusive_ptr<c10d::Work>> work;
  guarded(rank(), o_.timeout(), "gradient all-reduce", [&] {
    for (const auto& bucket : buckets) {
      std::vector<torch::Tensor> parts;
      for (size_t i : bucket) {
        const auto& g = params[i].grad();
        parts.push_back(g.defined() ? g.reshape(-1) : torch::zeros({params[i].numel()}, params[i].options()));
      }
      flat.push_back(torch::cat(parts));
      std::vector<at::Tensor> io{flat.back()};
      work.push_back(impl_->pg->allreduce(io));  // started now; the buckets travel while the next is packed
    }
    for (auto& w : work) w->wait(impl_->timeout);
  });
  for (size_t k = 0; k < buckets.size(); ++k) {
    flat[k].div_(double(world_size()));
    int64_t off = 0;
    for (size_t i : buckets[k]) {
      torch::Tensor p = params[i];  // shares the parameter (and its grad slot)
      const int64_t n = p.numel();
      auto avg = flat[k].narrow(0, off, n).view_as(p);
      if (p.grad().defined())
        p.mutable_grad().copy_(avg);
      else
        p.mutable_grad() = avg.clone();
      off += n;
    }
  }
  ++grad_reductions_;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  grad_seconds_ += s;
  return s;
}

void Communicator::broadcast(const std::vector<torch::Tensor>& tensors) {
  if (!distributed()) return;
  torch::NoGradGuard ng;
  guarded(rank(), o_.timeout(), "broadcast", [&] {
    for (const auto& t : tensors) {
      auto d = t.detach();      // shares t's storage
      auto c = d.contiguous();  // d itself when already contiguous (parameters are)
      std::vector<at::Tensor> io{c};
      c10d::BroadcastOptions bo;
      bo.rootRank = 0;
      impl_->pg->broadcast(io, bo)->wait(impl_->timeout);
      if (!c.is_same(d)) d.copy_(c);
    }
  });
}

namespace {
torch::Tensor reduce(c10d::ProcessGroupGloo& pg, std::chrono::milliseconds timeout, const torch::Tensor& v,
                     c10d::ReduceOp op) {
  auto t = v.to(torch::kFloat64).contiguous().clone();
  std::vector<at::Tensor> io{t};
  c10d::AllreduceOptions ao;
  ao.reduceOp = op;
  pg.allreduce(io, ao)->wait(timeout);
  return t;
}
}  // namespace

torch::Tensor Communicator::max(const torch::Tensor& v) {
  if (!distributed()) return v.to(torch::kFloat64);
  torch::Tensor out;
  guarded(rank(), o_.timeout(), "all-reduce (max)",
          [&] { out = reduce(*impl_->pg, impl_->timeout, v, c10d::ReduceOp::MAX); });
  return out;
}

torch::Tensor Communicator::sum(const torch::Tensor& v) {
  if (!distributed()) return v.to(torch::kFloat64);
  torch::Tensor out;
  guarded(rank(), o_.timeout(), "all-reduce (sum)",
          [&] { out = reduce(*impl_->pg, impl_->timeout, v, c10d::ReduceOp::SUM); });
  return out;
}

torch::Tensor Communicator::allgather(const torch::Tensor& t) {
  if (!distributed()) return t.unsqueeze(0);
  auto in = t.contiguous();
  std::vector<std::vector<at::Tensor>> out(1);
  for (int64_t r = 0; r < world_size(); ++r) out[0].push_back(torch::empty_like(in));
  std::vector<at::Tensor> inputs{in};
  guarded(rank(), o_.timeout(), "all-gather", [&] { impl_->pg->allgather(out, inputs)->wait(impl_->timeout); });
  return torch::stack(out[0]);
}

void Communicator::barrier() {
  if (!distributed()) return;
  guarded(rank(), o_.timeout(), "barrier", [&] { impl_->pg->barrier()->wait(impl_->timeout); });
}

}  // namespace ebm
