// Communicator (train/distributed.h): two ranks as two threads of this process,
// each with its own TCPStore client and ProcessGroupGloo on loopback. The
// collectives are checked against what they must compute by hand (the mean of
// known gradients, rank 0's values, the element-wise max), bucketing against
// no bucketing, and a lost peer against the promised DistributedError.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <future>
#include <thread>

#include "ebm/core/common.h"
#include "ebm/train/distributed.h"
#include "ebm/train/launch.h"

namespace ebm {
namespace {

DistOptions rank_options(int64_t rank, int port, double timeout = 20.0) {
  return DistOptions().world_size(2).rank(rank).master("127.0.0.1:" + std::to_string(port)).timeout(timeout);
}

// Run f(comm) on ranks 0 and 1 concurrently; rethrows the first failure.
template <class F>
void two_ranks(F f, int64_t bucket_bytes = 4 << 20) {
  const int port = free_port("127.0.0.1");
  auto run = [&](int64_t r) {
    Communicator c(rank_options(r, port).bucket_bytes(bucket_bytes));
    f(c);
  };
  auto r1 = std::async(std::launch::async, run, 1);
  run(0);
  r1.get();
}

TEST(Distributed, ParseMasterAndOptions) {
  EXPECT_EQ(parse_master("10.0.0.2:29500"), std::make_pair(std::string("10.0.0.2"), 29500));
  EXPECT_EQ(parse_master("node-a:1").second, 1);
  for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:65536", "host:12a", "host:99999999999"})
    EXPECT_THROW(parse_master(bad), UsageError) << bad;
  EXPECT_THROW(check_dist_options(DistOptions().world_size(0)), UsageError);
  EXPECT_THROW(check_dist_options(DistOptions().world_size(2).rank(2).master("h:1")), UsageError);
  EXPECT_THROW(check_dist_options(DistOptions().world_size(2).rank(-1).master("h:1")), UsageError);
  EXPECT_THROW(check_dist_options(DistOptions().world_size(2)), UsageError);  // no master
  EXPECT_THROW(check_dist_options(DistOptions().timeout(0)), UsageError);
  EXPECT_NO_THROW(check_dist_options(DistOptions()));
}

TEST(Distributed, OneRankIsTheIdentity) {
  Communicator c(DistOptions{});
  EXPECT_FALSE(c.distributed());
  auto p = torch::ones({3}, torch::requires_grad());
  p.mutable_grad() = torch::tensor({1.f, 2.f, 3.f});
  EXPECT_EQ(c.average_gradients({p}), 0.0);
  EXPECT_TRUE(torch::equal(p.grad(), torch::tensor({1.f, 2.f, 3.f})));
  EXPECT_TRUE(torch::equal(c.allgather(torch::arange(4)), torch::arange(4).unsqueeze(0)));
}

// Rank r's gradient of parameter k is known in closed form, so the mean is too.
void check_average(int64_t bucket_bytes) {
  two_ranks(
      [](Communicator& c) {
        std::vector<torch::Tensor> ps;
        for (int64_t k = 0; k < 5; ++k) {
          auto p = torch::zeros({k + 1, 300}, torch::requires_grad());  // 1.2 KB .. 6 KB each
          const auto g = torch::arange(double((k + 1) * 300)).view({k + 1, 300}).to(torch::kFloat32);
          if (!(k == 3 && c.rank() == 1)) p.mutable_grad() = g * float(c.rank() + 1) + float(k);
          ps.push_back(p);
        }
        c.average_gradients(ps);
        for (int64_t k = 0; k < 5; ++k) {
          const auto g = torch::arange(double((k + 1) * 300)).view({k + 1, 300}).to(torch::kFloat32);
          // mean over ranks of g*(r+1)+k; rank 1 had no gradient for k = 3 (counts as zeros)
          const auto want = k == 3 ? (g + float(k)) / 2 : (g * 1 + float(k) + g * 2 + float(k)) / 2;
          EXPECT_TRUE(torch::allclose(ps[size_t(k)].grad(), want, 0, 0)) << "rank " << c.rank() << " param " << k;
        }
        EXPECT_EQ(c.grad_reductions(), 1);
      },
      bucket_bytes);
}

TEST(Distributed, AverageGradientsOneBucket) { check_average(4 << 20); }
TEST(Distributed, AverageGradientsManySmallBuckets) { check_average(1024); }

TEST(Distributed, BroadcastMaxSumAllgather) {
  two_ranks([](Communicator& c) {
    auto a = torch::full({4}, float(c.rank() + 7));
    c.broadcast({a});
    EXPECT_TRUE(torch::equal(a, torch::full({4}, 7.f)));
    const auto mx = c.max(torch::tensor({double(c.rank()), -double(c.rank()), c.rank() == 1 ? HUGE_VAL : 0.0}));
    EXPECT_EQ(mx[0].item<double>(), 1.0);
    EXPECT_EQ(mx[1].item<double>(), 0.0);
    EXPECT_TRUE(std::isinf(mx[2].item<double>()));
    EXPECT_EQ(c.sum(torch::tensor({1.5 + double(c.rank())}))[0].item<double>(), 4.0);
    const auto all = c.allgather(torch::full({2, 3}, int64_t(c.rank())));
    ASSERT_EQ(all.sizes(), (std::vector<int64_t>{2, 2, 3}));
    EXPECT_TRUE(torch::equal(all[0], torch::zeros({2, 3}, torch::kInt64)));
    EXPECT_TRUE(torch::equal(all[1], torch::ones({2, 3}, torch::kInt64)));
    c.barrier();
  });
}

// Rank 1 leaves after one collective; rank 0's next collective must fail with
// a DistributedError naming itself, quickly (a closed connection) or at the
// timeout at worst, never hang.
TEST(Distributed, ALostPeerIsADistributedErrorNotAHang) {
  const int port = free_port("127.0.0.1");
  auto r1 = std::async(std::launch::async, [&] {
    Communicator c(rank_options(1, port, 5.0));
    c.barrier();
  });  // rank 1's communicator is destroyed when the thread ends
  Communicator c0(rank_options(0, port, 5.0));
  c0.barrier();
  r1.get();
  const auto t0 = std::chrono::steady_clock::now();
  auto p = torch::zeros({10}, torch::requires_grad());
  p.mutable_grad() = torch::ones({10});
  try {
    c0.average_gradients({p});
    ADD_FAILURE() << "no error after the peer left";
  } catch (const DistributedError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0: gradient all-reduce failed"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15.0);
}

TEST(Distributed, RendezvousWithoutPeersTimesOut) {
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(Communicator(rank_options(0, free_port("127.0.0.1"), 1.0)), DistributedError);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
}

TEST(Launch, RejectsBadOptionsAndReportsTheFirstFailure) {
  EXPECT_THROW(launch(LaunchOptions().command({})), UsageError);
  EXPECT_THROW(launch(LaunchOptions().nprocs(0).command({"true"})), UsageError);
  const auto ok = launch(LaunchOptions().nprocs(3).command({"sh", "-c", "exit 0", "sh"}));
  EXPECT_EQ(ok.exit_code, 0);
  ASSERT_EQ(ok.ranks.size(), 3u);
  // Rank r exits with code r: the launcher reports a failure, and its code.
  // sh -c 'exit $4' sees: $1=--world-size $2=3 $3=--rank $4=r $5=--master $6=addr
  const auto bad = launch(LaunchOptions().nprocs(3).grace(5).command({"sh", "-c", "exit $4", "sh"}));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_EQ(bad.ranks[0].code, 0);
  EXPECT_EQ(bad.ranks[1].code, 1);
  EXPECT_EQ(bad.ranks[2].code, 2);
  EXPECT_NE(bad.message.find("exited with code"), std::string::npos) << bad.message;
  // A rank that hangs after another failed is stopped after the grace period.
  const auto t0 = std::chrono::steady_clock::now();
  const auto hang = launch(LaunchOptions().nprocs(2).grace(1).command(
      {"sh", "-c", "if [ \"$4\" = 0 ]; then exit 3; else exec sleep 60; fi", "sh"}));
  EXPECT_EQ(hang.exit_code, 3);
  EXPECT_EQ(hang.ranks[1].signal, SIGTERM);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
}

}  // namespace
}  // namespace ebm
