// The server: the exposition format against a checker written from the
// format's specification, the batcher against its contract, the protocol
// parsers against RFC vectors and bad input, and every endpoint over real
// HTTP on the shipped models, with served energies checked against the CLI.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <torch/torch.h>

#include "ebm/core/models.h"
#include "ebm/io/image_io.h"
#include "ebm/ood/ood.h"
#include "ebm/restore/restore.h"
#include "ebm/serve/http.h"
#include "ebm/serve/service.h"
#include "test_util.h"

namespace ebm::serve {
namespace {
using ebm::test::kRoot;


// ---------------------------------------------------------------- exposition checker
// From https://prometheus.io/docs/instrumenting/exposition_formats/ (text 0.0.4):
// HELP/TYPE comments, then samples `name{labels} value`; a family's samples are
// contiguous and after its TYPE line; label values escape \ " and newline;
// histogram buckets carry `le`, are cumulative, end at +Inf, which equals _count,
// and a _sum is present. Returns "" when valid, else the first problem.
std::string check_exposition(const std::string& text) {
  if (text.empty() || text.back() != '\n') return "must end with a newline";
  static const std::regex name_re("[a-zA-Z_:][a-zA-Z0-9_:]*");
  static const std::regex sample_re(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
  static const std::regex label_re(R"re(^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$))re");
  std::map<std::string, std::string> types;
  std::set<std::string> closed, series;
  std::string current;
  struct Hist {
    std::map<std::string, std::vector<std::pair<double, double>>> buckets;  // labels w/o le -> (le, count)
    std::map<std::string, double> count;
    std::set<std::string> sum;
  };
  std::map<std::string, Hist> hists;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const std::string at = "line " + std::to_string(n) + ": ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ls(line);
      std::string hash, kw, name;
      ls >> hash >> kw >> name;
      if (kw != "HELP" && kw != "TYPE") continue;  // other comments are allowed
      if (!std::regex_match(name, name_re)) return at + "bad metric name '" + name + "'";
      if (kw == "TYPE") {
        std::string type;
        ls >> type;
        if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" && type != "untyped")
          return at + "bad type '" + type + "'";
        if (types.count(name)) return at + "second TYPE for " + name;
        types[name] = type;
      }
      if (name != current) {
        if (!current.empty()) closed.insert(current);
        if (closed.count(name)) return at + "family " + name + " is not contiguous";
        current = name;
      }
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, sample_re)) return at + "not a sample: " + line;
    std::string name = m[1], labels = m[3], value = m[4];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
          types.count(name.substr(0, name.size() - s.size())) &&
          types[name.substr(0, name.size() - s.size())] == "histogram")
        family = name.substr(0, name.size() - s.size());
    }
    if (!types.count(family)) return at + "sample of " + name + " before its TYPE line";
    if (family != current) return at + "sample of " + family + " outside its family's block";
    // labels
    std::string rest = labels, le, others;
    std::set<std::string> seen;
    while (!rest.empty()) {
      std::smatch lm;
      if (!std::regex_search(rest, lm, label_re)) return at + "bad label set {" + labels + "}";
      if (!seen.insert(lm[1]).second) return at + "label " + std::string(lm[1]) + " twice";
      if (lm[1] == "le") le = lm[2];
      else others += std::string(lm[1]) + "=" + std::string(lm[2]) + ";";
      rest = lm.suffix();
    }
    char* end = nullptr;
    double v = value == "+Inf" ? INFINITY : value == "-Inf" ? -INFINITY : value == "NaN" ? NAN : std::strtod(value.c_str(), &end);
    if (end && *end) return at + "bad value '" + value + "'";
    if (!series.insert(name + "{" + labels + "}").second) return at + "duplicate series " + name + "{" + labels + "}";
    if (types[family] == "counter" && !(v >= 0)) return at + "negative counter";
    if (types[family] == "histogram") {
      auto& h = hists[family];
      if (name == family + "_bucket") {
        if (le.empty()) return at + "bucket without le";
        const double b = le == "+Inf" ? INFINITY : std::strtod(le.c_str(), nullptr);
        auto& bs = h.buckets[others];
        if (!bs.empty() && (b <= bs.back().first || v < bs.back().second))
          return at + "buckets not increasing or not cumulative";
        bs.push_back({b, v});
      } else if (name == family + "_count") {
        h.count[others] = v;
      } else if (name == family + "_sum") {
        h.sum.insert(others);
      } else {
        return at + "plain sample " + name + " in histogram " + family;
      }
    }
  }
  for (const auto& [family, h] : hists)
    for (const auto& [labels, bs] : h.buckets) {
      if (bs.empty() || !std::isinf(bs.back().first)) return family + "{" + labels + "}: no +Inf bucket";
      if (!h.count.count(labels) || h.count.at(labels) != bs.back().second)
        return family + "{" + labels + "}: _count differs from the +Inf bucket";
      if (!h.sum.count(labels)) return family + "{" + labels + "}: no _sum";
    }
  return "";
}

TEST(ServeMetrics, ExpositionIsValidAndExact) {
  MetricsRegistry r;
  r.counter("req_total", "Requests.\nSecond line with \\ backslash.", {"endpoint", "status"});
  r.gauge("depth", "Queue depth.");
  r.histogram("lat_seconds", "Latency.", {0.005, 0.1, 10}, {"endpoint"});
  r.inc("req_total", {"/v1/score", "200"}, 3);
  r.inc("req_total", {"we\"ird\\path\n", "400"});
  r.set("depth", 2.5);
  for (double v : {0.001, 0.005, 0.05, 20.0}) r.observe("lat_seconds", v, {"/v1/score"});
  const std::string t = r.render();
  EXPECT_EQ(check_exposition(t), "") << t;
  EXPECT_NE(t.find("# HELP req_total Requests.\\nSecond line with \\\\ backslash.\n"), std::string::npos) << t;
  EXPECT_NE(t.find("req_total{endpoint=\"we\\\"ird\\\\path\\n\",status=\"400\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("depth 2.5\n"), std::string::npos);
  // le is "v <= bound": 0.005 falls in the 0.005 bucket; cumulative counts 2, 3, 3, 4.
  EXPECT_NE(t.find("lat_seconds_bucket{endpoint=\"/v1/score\",le=\"0.005\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lat_seconds_bucket{endpoint=\"/v1/score\",le=\"0.1\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("lat_seconds_bucket{endpoint=\"/v1/score\",le=\"10\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("lat_seconds_bucket{endpoint=\"/v1/score\",le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(t.find("lat_seconds_count{endpoint=\"/v1/score\"} 4\n"), std::string::npos);
  EXPECT_DOUBLE_EQ(r.value("req_total", {"/v1/score", "200"}), 3);
  EXPECT_THROW(r.inc("req_total", {"only-one"}), std::invalid_argument);
  EXPECT_THROW(r.inc("depth"), std::invalid_argument);
  EXPECT_THROW(r.counter("bad-name", "x"), std::invalid_argument);
  EXPECT_THROW(r.histogram("h2", "x", {1, 1}), std::invalid_argument);
}

TEST(ServeMetrics, CheckerRejectsBrokenText) {
  EXPECT_NE(check_exposition("# TYPE a counter\na -1\n"), "");
  EXPECT_NE(check_exposition("a 1\n"), "");  // no TYPE
  EXPECT_NE(check_exposition("# TYPE a gauge\na{x=\"1} 1\n"), "");
  EXPECT_NE(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"), "");
  EXPECT_NE(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"), "");
  EXPECT_NE(check_exposition("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n"), "");
  EXPECT_NE(check_exposition("# TYPE a gauge\na 1"), "");
  EXPECT_EQ(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"), "");
}

// ---------------------------------------------------------------- batcher

TEST(ServeBatcher, JoinsConcurrentRequestsAndReturnsEachItsRows) {
  std::vector<int64_t> batch_rows;
  std::mutex mu;
  Batcher b(BatcherOptions().max_batch(8).max_delay_ms(200).workers(1),
            [&](const BatchInfo& i) {
              std::lock_guard<std::mutex> lk(mu);
              batch_rows.push_back(i.rows);
            });
  BatchFn twice = [](const torch::Tensor& x) { return std::vector<torch::Tensor>{x * 2, x.sum(1)}; };
  std::vector<std::future<std::vector<torch::Tensor>>> futs;
  for (int i = 0; i < 8; ++i) futs.push_back(b.submit("k", torch::full({1, 3}, float(i)), twice));
  for (int i = 0; i < 8; ++i) {
    auto out = futs[size_t(i)].get();
    ASSERT_EQ(out.size(), 2u);
    EXPECT_TRUE(torch::equal(out[0], torch::full({1, 3}, 2.0f * i)));
    EXPECT_FLOAT_EQ(out[1].item<float>(), 3.0f * i);
  }
  // Eight one-row requests within 200 ms: one batch of 8 (a full batch does not wait out the delay).
  EXPECT_EQ(batch_rows, std::vector<int64_t>({8}));
}

TEST(ServeBatcher, DifferentKeysNeverShareABatchAndErrorsReachEveryCaller) {
  Batcher b(BatcherOptions().max_batch(64).max_delay_ms(20));
  std::atomic<int> calls{0};
  BatchFn id = [&](const torch::Tensor& x) {
    ++calls;
    return std::vector<torch::Tensor>{x.clone()};
  };
  auto f1 = b.submit("a", torch::ones({2, 1}), id);
  auto f2 = b.submit("b", torch::zeros({3, 1}), id);
  EXPECT_EQ(f1.get()[0].size(0), 2);
  EXPECT_EQ(f2.get()[0].size(0), 3);
  EXPECT_EQ(calls.load(), 2);
  auto bad = b.submit("c", torch::ones({1, 1}), [](const torch::Tensor&) -> std::vector<torch::Tensor> {
    throw std::runtime_error("model failed");
  });
  EXPECT_THROW(bad.get(), std::runtime_error);
}

TEST(ServeBatcher, FullQueueRefusesAndShutdownDrains) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  Batcher b(BatcherOptions().max_batch(1).max_delay_ms(0).queue_capacity(2));
  BatchFn slow = [gate](const torch::Tensor& x) {
    gate.wait();
    return std::vector<torch::Tensor>{x};
  };
  auto f1 = b.submit("k", torch::ones({1, 1}), slow);
  auto f2 = b.submit("k", torch::ones({1, 1}), slow);
  EXPECT_THROW(b.submit("k", torch::ones({1, 1}), slow), QueueFull);
  release.set_value();
  b.shutdown();  // runs both accepted requests before returning
  EXPECT_EQ(f1.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(f2.get()[0].size(0), 1);
  EXPECT_THROW(b.submit("k", torch::ones({1, 1}), slow), QueueFull);
}

// ---------------------------------------------------------------- protocol

TEST(ServeProtocol, Base64MatchesRfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> v{
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : v) {
    EXPECT_EQ(base64_encode(plain), enc);
    EXPECT_EQ(base64_decode(enc, "x"), plain);
  }
  EXPECT_THROW(base64_decode("Zm9v!", "x"), HttpError);
  EXPECT_THROW(base64_decode("Zm9", "x"), HttpError);
  EXPECT_THROW(base64_decode("Zg==Zg==", "x"), HttpError);
}

TEST(ServeProtocol, ImagesParseOrAreRefusedWithTheirStatus) {
  const ImageShape s;
  json flat = json::array();
  for (int i = 0; i < 784; ++i) flat.push_back(i / 783.0);
  const auto a = parse_image(flat, s, "img");
  EXPECT_EQ(a.sizes(), torch::IntArrayRef({1, 28, 28}));
  EXPECT_FLOAT_EQ(a[0][27][27].item<float>(), 1.0f);
  // A PNG of the same pixels (quantised) decodes to them.
  const auto u8 = a[0].mul(255).round().to(torch::kUInt8);
  const auto b = parse_image(base64_encode(encode_png(u8)), s, "img");
  EXPECT_TRUE(torch::allclose(b[0], u8.to(torch::kFloat32) / 255));
  auto status = [&](const json& body, int64_t max = 4) {
    try {
      parse_images(body, s, max);
    } catch (const HttpError& e) {
      return e.status;
    }
    return 200;
  };
  json nested = json::array();
  for (int r = 0; r < 28; ++r) nested.push_back(std::vector<double>(28, 0.5));
  EXPECT_EQ(status({{"images", {nested}}}), 200);
  EXPECT_EQ(status(json::object()), 400);
  EXPECT_EQ(status({{"images", json::array()}}), 400);
  EXPECT_EQ(status({{"images", {nested, nested, nested, nested, nested}}}), 413);
  json wrong = nested;
  wrong[3] = std::vector<double>(27, 0.5);
  EXPECT_EQ(status({{"images", {wrong}}}), 400);
  json out_of_range = nested;
  out_of_range[0][0] = 1.5;
  EXPECT_EQ(status({{"images", {out_of_range}}}), 400);
  EXPECT_EQ(status({{"images", {"not base64!"}}}), 400);
  EXPECT_EQ(status({{"images", {base64_encode("\x89PNG\r\n\x1a\n garbage that is no png")}}}), 400);
  const auto big = encode_png(torch::zeros({64, 64}, torch::kUInt8));
  EXPECT_EQ(status({{"images", {base64_encode(big)}}}), 400);  // wrong size, refused before decoding
  std::string corrupt = encode_png(u8);
  corrupt.resize(corrupt.size() - 20);
  EXPECT_EQ(status({{"images", {base64_encode(corrupt)}}}), 400);
  EXPECT_THROW(parse_body("{\"images\": [1,"), HttpError);
  EXPECT_THROW(parse_body("[1,2]"), HttpError);
  EXPECT_THROW(parse_body("{\"a\": NaN}"), HttpError);
}

TEST(ServeProtocol, OipTensorsFlatNestedAndUint8) {
  const ImageShape s;
  std::vector<int> u(2 * 784, 255);
  json req{{"inputs", {{{"name", "input"}, {"shape", {2, 1, 28, 28}}, {"datatype", "UINT8"}, {"data", u}}}}};
  const auto x = parse_oip_input(req, s, 8);
  EXPECT_EQ(x.sizes(), torch::IntArrayRef({2, 1, 28, 28}));
  EXPECT_FLOAT_EQ(x.min().item<float>(), 1.0f);
  req["inputs"][0]["datatype"] = "FP32";
  EXPECT_THROW(parse_oip_input(req, s, 8), HttpError);  // 255 is outside [0,1]
  req["inputs"][0]["datatype"] = "INT8";
  EXPECT_THROW(parse_oip_input(req, s, 8), HttpError);
  req["inputs"][0]["datatype"] = "UINT8";
  req["inputs"][0]["shape"] = {2, 1, 28, 27};
  EXPECT_THROW(parse_oip_input(req, s, 8), HttpError);
  req["inputs"][0]["shape"] = {3, 784};
  EXPECT_THROW(parse_oip_input(req, s, 8), HttpError);  // 3*784 elements claimed, 2*784 sent
  EXPECT_EQ(oip_tensor("e", torch::tensor({1.5, 2.5}, torch::kFloat64)),
            json({{"name", "e"}, {"datatype", "FP64"}, {"shape", {2}}, {"data", {1.5, 2.5}}}));
  EXPECT_THROW(oip_requested_outputs({{"outputs", {{{"name", "nope"}}}}}, {"energy"}), HttpError);
}

// ---------------------------------------------------------------- the server over HTTP

// A Service and its HttpServer on a free loopback port, for the test's life.
struct Running {
  Service svc;
  HttpServer http;
  int port;
  std::thread thread;
  Running(const ServeSpec& spec, ServeOptions o) : svc(spec, o.port(0).threads(1)), http(svc), port(http.bind()) {
    thread = std::thread([this] { http.listen(); });
    svc.warm_up();
  }
  ~Running() {
    http.stop();
    thread.join();
    svc.shutdown();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
};

ServeSpec fmnist_spec() {
  ServeSpec s;
  s.models.push_back({"fmnist-ood", kRoot + "/models/fmnist-ood", kRoot + "/models/fmnist-ood.detector.json"});
  return s;
}

// n test-like images: deterministic smooth blobs plus noise, in [0,1].
torch::Tensor some_images(int64_t n) {
  torch::manual_seed(3);
  auto g = torch::linspace(-1, 1, 28);
  auto r2 = g.view({1, 28}).pow(2) + g.view({28, 1}).pow(2);
  auto x = torch::exp(-r2 * 3).view({1, 1, 28, 28}).repeat({n, 1, 1, 1});
  x = (x + 0.1 * torch::rand({n, 1, 28, 28})).clamp(0, 1);
  x[n - 1] = torch::rand({1, 28, 28});  // one noise image
  return x;
}

json images_json(const torch::Tensor& x) {
  json arr = json::array();
  for (int64_t i = 0; i < x.size(0); ++i) arr.push_back(image_to_json(x[i], "array"));
  return arr;
}

json post(httplib::Client& c, const std::string& path, const json& body, int expect_status) {
  auto res = c.Post(path.c_str(), body.dump(), "application/json");
  EXPECT_TRUE(res) << path;
  if (!res) return nullptr;
  EXPECT_EQ(res->status, expect_status) << path << ": " << res->body;
  return json::parse(res->body);
}

TEST(ServeHttp, EveryEndpointAndServedScoresEqualTheCli) {
  Running s(fmnist_spec(), ServeOptions());
  auto c = s.client();
  const auto x = some_images(6);
  const std::string hash = model_hash(kRoot + "/models/fmnist-ood");

  auto live = c.Get("/v2/health/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(c.Get("/v2/health/ready")->status, 200);
  EXPECT_EQ(json::parse(c.Get("/v2")->body)["name"], "ebmkit");
  const json meta = json::parse(c.Get("/v2/models/fmnist-ood")->body);
  EXPECT_EQ(meta["inputs"][0]["shape"], json({-1, 1, 28, 28}));
  EXPECT_EQ(meta["outputs"].size(), 4u);
  EXPECT_EQ(c.Get("/v2/models/fmnist-ood/ready")->status, 200);
  EXPECT_EQ(c.Get("/v2/models/nope")->status, 404);

  // /v1/score equals `ebm ood predict` on the same images (written as NPY).
  auto res = c.Post("/v1/score", json{{"images", images_json(x)}}.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("X-Model-SHA256"), hash);
  const json score = json::parse(res->body);
  const std::string npy = ::testing::TempDir() + "serve_images.npy";
  write_tensor(npy, x);
  const std::string cmd = std::string(EBM_BINARY) + " ood predict --threads 1 --quiet --detector " + kRoot +
                          "/models/fmnist-ood.detector.json --model " + kRoot + "/models/fmnist-ood --input " + npy;
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[4096];
  int64_t i = 0;
  while (fgets(line, sizeof line, p)) {
    const json cli = json::parse(line);
    const json& srv = score["results"][size_t(i)];
    EXPECT_NEAR(srv["score"].get<double>(), cli["energy"].get<double>(), 1e-5 * std::max(1.0, std::fabs(cli["energy"].get<double>())));
    EXPECT_EQ(srv["ood"], cli["ood"]);
    EXPECT_DOUBLE_EQ(srv["p_value"].get<double>(), cli["p_value"].get<double>());
    ++i;
  }
  EXPECT_EQ(pclose(p), 0);
  EXPECT_EQ(i, x.size(0));
  EXPECT_TRUE(score["results"][5]["ood"].get<bool>());  // the noise image
  // Raw energies equal the library's on the same model.
  auto e = load_model(kRoot + "/models/fmnist-ood");
  const auto en = energy_batched(*e, x);
  for (int64_t k = 0; k < x.size(0); ++k)
    EXPECT_NEAR(score["results"][size_t(k)]["energy"].get<double>(), en[k].item<double>(), 1e-5 * std::fabs(en[k].item<double>()));

  // The Open Inference Protocol gives the same energies, FP32 or UINT8.
  json data = json::array();
  const auto flat = x.contiguous();
  for (int64_t k = 0; k < flat.numel(); ++k) data.push_back(flat.data_ptr<float>()[k]);
  const json infer = post(c, "/v2/models/fmnist-ood/infer",
                          {{"id", "r1"}, {"inputs", {{{"name", "input"}, {"shape", {6, 1, 28, 28}}, {"datatype", "FP32"}, {"data", data}}}}}, 200);
  EXPECT_EQ(infer["id"], "r1");
  EXPECT_EQ(infer["model_name"], "fmnist-ood");
  for (const auto& o : infer["outputs"])
    if (o["name"] == "energy") {
      for (int64_t k = 0; k < 6; ++k)
        EXPECT_NEAR(o["data"][size_t(k)].get<double>(), score["results"][size_t(k)]["energy"].get<double>(), 1e-3);
    }
  const json only = post(c, "/v2/models/fmnist-ood/infer",
                         {{"inputs", {{{"name", "x"}, {"shape", {1, 784}}, {"datatype", "UINT8"}, {"data", std::vector<int>(784, 0)}}}},
                          {"outputs", {{{"name", "ood"}}}}}, 200);
  ASSERT_EQ(only["outputs"].size(), 1u);
  EXPECT_EQ(only["outputs"][0]["datatype"], "BOOL");

  // /v1/denoise equals the library's denoise_solve (what `ebm denoise` runs).
  const json den = post(c, "/v1/denoise", {{"images", images_json(x.narrow(0, 0, 2))}, {"sigma", 0.2}}, 200);
  const auto ref = denoise_solve(*e, x.narrow(0, 0, 2), DenoiseOptions().sigma(0.2));
  for (int64_t k = 0; k < 2; ++k) {
    const auto got = parse_image(den["images"][size_t(k)], ImageShape(), "denoised");
    EXPECT_LT((got - ref[k]).abs().max().item<float>(), 1e-5);
  }
  EXPECT_EQ(den["options"]["solver"], "tweedie");
  const json png = post(c, "/v1/denoise", {{"images", images_json(x.narrow(0, 0, 1))}, {"sigma", 0.2}, {"format", "png"}}, 200);
  EXPECT_TRUE(png["images"][0].is_string());

  // /v1/inpaint keeps known pixels bit for bit.
  const json inp = post(c, "/v1/inpaint", {{"images", images_json(x.narrow(0, 0, 1))}, {"mask", "center:10"}, {"steps", 20}}, 200);
  const auto filled = parse_image(inp["images"][0], ImageShape(), "filled");
  const auto known = make_mask("center:10", 1, 28, 28, 0)[0];
  EXPECT_TRUE(torch::equal(filled * known, x[0] * known));

  const json models = json::parse(c.Get("/v1/models")->body);
  EXPECT_EQ(models["models"][0]["sha256"], hash);
  EXPECT_EQ(models["models"][0]["detector"]["score"], "combined");

  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(check_exposition(metrics->body), "") << metrics->body;
  EXPECT_NE(metrics->body.find("ebm_requests_total{endpoint=\"/v1/score\",status=\"200\"} 1"), std::string::npos);
  EXPECT_NE(metrics->body.find("ebm_ood_flag_rate"), std::string::npos);
}

TEST(ServeHttp, BadInputGetsItsStatusAndTheServerStaysUp) {
  Running s(fmnist_spec(), ServeOptions().max_body_bytes(64 * 1024).max_images_per_request(4));
  auto c = s.client();
  auto status = [&](const std::string& path, const std::string& body) {
    auto r = c.Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(r);
    if (!r) return -1;
    if (r->status >= 400) {
      EXPECT_TRUE(json::parse(r->body).contains("error")) << r->body;
    }
    return r->status;
  };
  json img = json::array();
  for (int r = 0; r < 28; ++r) img.push_back(std::vector<double>(28, 0.5));
  EXPECT_EQ(status("/v1/score", "{\"images\": [1,"), 400);
  EXPECT_EQ(status("/v1/score", "{\"images\": [NaN]}"), 400);
  EXPECT_EQ(status("/v1/score", json{{"images", {{1, 2}}}}.dump()), 400);
  EXPECT_EQ(status("/v1/score", json{{"images", {"@@@"}}}.dump()), 400);
  EXPECT_EQ(status("/v1/score", json{{"images", {img}}, {"model", "nope"}}.dump()), 404);
  EXPECT_EQ(status("/v1/score", json{{"images", {img, img, img, img, img}}}.dump()), 413);
  EXPECT_EQ(status("/v1/score", std::string(100 * 1024, ' ')), 413);
  EXPECT_EQ(status("/v1/denoise", json{{"images", {img}}, {"solver", "tweedie"}}.dump()), 400);  // tweedie needs sigma
  EXPECT_EQ(status("/v1/denoise", json{{"images", {img}}, {"steps", 1e9}}.dump()), 400);
  EXPECT_EQ(status("/v1/inpaint", json{{"images", {img}}, {"mask", "/etc/passwd"}}.dump()), 400);
  EXPECT_EQ(status("/v1/guard", json{{"images", {img}}}.dump()), 404);  // not configured
  EXPECT_EQ(status("/v2/models/fmnist-ood/infer", json{{"inputs", json::array()}}.dump()), 400);
  auto wrong_method = c.Get("/v1/score");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
  EXPECT_EQ(c.Get("/v2/health/live")->status, 200);
  EXPECT_EQ(status("/v1/score", json{{"images", {img}}}.dump()), 200);
}

TEST(ServeHttp, TinyQueueGives503WithRetryAfter) {
  Running s(fmnist_spec(), ServeOptions().batcher(BatcherOptions().queue_capacity(1).max_delay_ms(0)));
  json img = json::array();
  for (int r = 0; r < 28; ++r) img.push_back(std::vector<double>(28, 0.5));
  // A long gradient-descent denoise holds the only queue slot.
  std::thread slow([&] {
    auto c = s.client();
    post(c, "/v1/denoise", {{"images", {img}}, {"solver", "gd"}, {"steps", 2000}}, 200);
  });
  for (int i = 0; i < 200 && s.svc.batcher().in_flight() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto c = s.client();
  auto r = c.Post("/v1/score", json{{"images", {img}}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  slow.join();
  EXPECT_EQ(c.Post("/v1/score", json{{"images", {img}}}.dump(), "application/json")->status, 200);
}

TEST(ServeHttp, GuardRefusesFlaggedInputsUnlessAsked) {
  ServeSpec spec;
  spec.models.push_back({"mnist-ood", kRoot + "/models/mnist-ood", kRoot + "/models/mnist-ood.detector.json"});
  spec.classifier = kRoot + "/models/mnist-clf";
  spec.purifier = kRoot + "/models/mnist-purifier";
  Running s(spec, ServeOptions());
  auto c = s.client();
  torch::manual_seed(0);
  const auto noise = torch::rand({1, 1, 28, 28});
  const json refused = post(c, "/v1/guard", {{"images", images_json(noise)}}, 422);
  EXPECT_NE(refused["error"].get<std::string>().find("flagged"), std::string::npos);
  EXPECT_EQ(refused["refused"], json({0}));
  const json allowed = post(c, "/v1/guard", {{"images", images_json(noise)}, {"allow_ood", true}}, 200);
  const auto& r = allowed["results"][0];
  EXPECT_TRUE(r["ood"]["flagged"].get<bool>());
  EXPECT_EQ(r["probabilities"].size(), 10u);
  double total = 0;
  for (const auto& p : r["probabilities"]) total += p.get<double>();
  EXPECT_NEAR(total, 1.0, 1e-5);
  EXPECT_EQ(allowed["models_sha256"]["classifier"], model_hash(kRoot + "/models/mnist-clf"));
}


// ---------------------------------------------------------------- reload and abuse

// Copies a model folder's two files into dir, each by rename (whole files only).
void install_model(const std::string& from, const std::string& dir) {
  for (const char* f : {"weights.pt", "card.json"}) {
    std::ifstream in(from + "/" + f, std::ios::binary);
    std::ofstream out(dir + "/" + f + ".new", std::ios::binary);
    out << in.rdbuf();
    out.close();
    ASSERT_EQ(std::rename((dir + "/" + f + ".new").c_str(), (dir + "/" + f).c_str()), 0);
  }
}

TEST(ServeReload, UnderConcurrentRequestsNoneFailsAndHashesSwitch) {
  const std::string dir = ::testing::TempDir() + "serve_reload_model";
  std::filesystem::create_directories(dir);
  install_model(kRoot + "/models/fmnist-dsm", dir);
  const std::string old_hash = model_hash(kRoot + "/models/fmnist-dsm");
  const std::string new_hash = model_hash(kRoot + "/models/mnist-dsm");
  ASSERT_NE(old_hash, new_hash);
  ServeSpec spec;
  spec.models.push_back({"served", dir, ""});
  Running s(spec, ServeOptions());
  const auto x = some_images(1);
  const json body{{"images", images_json(x)}};
  // Each model's energy on this image, from the library.
  const double e_old = energy_batched(*load_model(kRoot + "/models/fmnist-dsm"), x)[0].item<double>();
  const double e_new = energy_batched(*load_model(kRoot + "/models/mnist-dsm"), x)[0].item<double>();

  struct Answer {
    int status;
    std::string header, body_hash;
    double energy;
  };
  std::atomic<bool> stop{false};
  std::atomic<size_t> total{0};
  std::vector<std::vector<Answer>> answers(6);
  std::vector<std::thread> clients;
  for (size_t k = 0; k < answers.size(); ++k)
    clients.emplace_back([&, k] {
      auto c = s.client();
      while (!stop) {
        auto r = c.Post("/v1/score", body.dump(), "application/json");
        ++total;
        if (!r) {
          answers[k].push_back({0, "", "", 0});
          continue;
        }
        const json j = json::parse(r->body, nullptr, false);
        const bool ok = r->status == 200 && j.is_object() && j.contains("results");
        answers[k].push_back({r->status, r->get_header_value("X-Model-SHA256"), ok ? j["model_sha256"].get<std::string>() : "",
                              ok ? j["results"][0]["energy"].get<double>() : 0.0});
      }
    });
  auto count = [&] { return total.load(); };
  while (count() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  install_model(kRoot + "/models/mnist-dsm", dir);
  const json r = s.svc.reload();
  EXPECT_EQ(r["models"][0]["old_sha256"], old_hash);
  EXPECT_EQ(r["models"][0]["sha256"], new_hash);
  EXPECT_TRUE(r["models"][0]["changed"].get<bool>());
  const size_t at_reload = count();
  while (count() < at_reload + 200) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // A broken file: the reload fails and the new model keeps serving.
  {
    std::ofstream junk(dir + "/weights.pt", std::ios::binary | std::ios::trunc);
    junk << std::string(1000, '\x7f');
  }
  EXPECT_ANY_THROW(s.svc.reload());
  const size_t at_failed = count();
  while (count() < at_failed + 100) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (auto& t : clients) t.join();

  size_t n_old = 0, n_new = 0;
  for (const auto& a : answers) {
    bool seen_new = false;
    for (const auto& x : a) {
      ASSERT_EQ(x.status, 200) << "a request failed during the reload";
      EXPECT_EQ(x.header, x.body_hash);
      if (x.header == old_hash) {
        EXPECT_FALSE(seen_new) << "an old-model answer after a new-model one on the same connection";
        EXPECT_NEAR(x.energy, e_old, 1e-4 * std::fabs(e_old));
        ++n_old;
      } else {
        EXPECT_EQ(x.header, new_hash);
        EXPECT_NEAR(x.energy, e_new, 1e-4 * std::fabs(e_new));
        seen_new = true;
        ++n_new;
      }
    }
  }
  EXPECT_GE(n_old, 150u);
  EXPECT_GE(n_new, 250u);
  const std::string m = s.svc.metrics().render();
  EXPECT_NE(m.find("ebm_reloads_total{result=\"ok\"} 1"), std::string::npos);
  EXPECT_NE(m.find("ebm_reloads_total{result=\"failed\"} 1"), std::string::npos);
  EXPECT_EQ(json::parse(s.client().Get("/v1/models")->body)["generation"], 1);
}

// A raw TCP client: connect, send, read until the server closes or `wait_s` passes.
struct Raw {
  int fd = -1;
  explicit Raw(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~Raw() {
    if (fd >= 0) ::close(fd);
  }
  void send(const std::string& s) const { ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), ssize_t(s.size())); }
  // Everything until the server closes (or wait_s), and how long that took.
  std::pair<std::string, double> read_all(double wait_s) const {
    std::string out;
    const auto t0 = std::chrono::steady_clock::now();
    char buf[4096];
    for (;;) {
      const double left = wait_s - std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      pollfd p{fd, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, int(left * 1000)) <= 0) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
    }
    return {out, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
  }
};

TEST(ServeAbuse, ShortAndSlowBodiesGet408AndHoldNoThread) {
  // Two HTTP threads only: if a stalled request held one, the others would queue.
  Running s(fmnist_spec(), ServeOptions().http_threads(2).request_timeout_ms(1000).keep_alive_timeout_ms(1000));
  // Headers claim 1000 bytes, 10 arrive.
  std::vector<std::unique_ptr<Raw>> stalled;
  for (int i = 0; i < 8; ++i) {
    stalled.push_back(std::make_unique<Raw>(s.port));
    stalled.back()->send("POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"images\"");
  }
  // Meanwhile a valid request on a new connection is answered at once.
  const auto t0 = std::chrono::steady_clock::now();
  json img = json::array();
  for (int r = 0; r < 28; ++r) img.push_back(std::vector<double>(28, 0.5));
  EXPECT_EQ(s.client().Post("/v1/score", json{{"images", {img}}}.dump(), "application/json")->status, 200);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.5);
  for (auto& r : stalled) {
    const auto [out, secs] = r->read_all(5);
    EXPECT_EQ(out.rfind("HTTP/1.1 408", 0), 0u) << out;
    EXPECT_NE(out.find("\"error\""), std::string::npos);
    EXPECT_LT(secs, 2.5);  // the 1-s deadline, swept every 0.1 s
  }
  // A slow body: one byte every 150 ms never completes within the deadline.
  {
    Raw slow(s.port);
    slow.send("POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    std::string got;
    for (int i = 0; i < 20; ++i) {
      if (::send(slow.fd, "{", 1, MSG_NOSIGNAL) != 1) break;
      pollfd p{slow.fd, POLLIN, 0};
      if (::poll(&p, 1, 150) > 0) break;  // the answer (or the close) came
    }
    const auto [out, secs] = slow.read_all(3);
    EXPECT_EQ(out.rfind("HTTP/1.1 408", 0), 0u) << out;
  }
  // Chunked and 100-continue bodies that never finish get the same deadline.
  for (const std::string head : {"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"ima", "Expect: 100-continue\r\nContent-Length: 50\r\n\r\n{"}) {
    Raw r(s.port);
    r.send("POST /v1/score HTTP/1.1\r\nHost: x\r\n" + head);
    const auto [out, secs] = r.read_all(4);
    EXPECT_NE(out.find("HTTP/1.1 408"), std::string::npos) << out;
    EXPECT_LT(secs, 3.0);
  }
  // An idle keep-alive connection is closed after the keep-alive timeout.
  {
    Raw idle(s.port);
    const auto [out, secs] = idle.read_all(4);
    EXPECT_EQ(out, "");
    EXPECT_GT(secs, 0.8);
    EXPECT_LT(secs, 2.5);
  }
  const std::string m = s.svc.metrics().render();
  EXPECT_NE(m.find("ebm_connections_closed_total{reason=\"timeout\"}"), std::string::npos);
  EXPECT_NE(m.find("ebm_connections_closed_total{reason=\"idle_closed\"}"), std::string::npos);
  EXPECT_EQ(s.client().Get("/v2/health/live")->status, 200);
}

TEST(ServeAbuse, ChunkedContinueAndOversizedBodiesHoldNoThread) {
  // One HTTP thread: any of the connections below holding it would stall the
  // valid request that follows them.
  Running s(fmnist_spec(), ServeOptions().http_threads(1).request_timeout_ms(5000).max_body_bytes(1 << 20));
  json img = json::array();
  for (int r = 0; r < 28; ++r) img.push_back(std::vector<double>(28, 0.25));
  const std::string body = json{{"images", {img}}}.dump();
  const std::string post = "POST /v1/score HTTP/1.1\r\nHost: x\r\n";
  // A chunked body half sent, and a 100-continue request whose body is held back.
  Raw chunked(s.port), expecting(s.port);
  const size_t half = body.size() / 2;
  char hex[32];
  std::snprintf(hex, sizeof hex, "%zx", half);
  chunked.send(post + "Transfer-Encoding: chunked\r\n\r\n" + hex + "\r\n" + body.substr(0, half) + "\r\n");
  expecting.send(post + "Expect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  {
    std::string got;
    char buf[256];
    pollfd p{expecting.fd, POLLIN, 0};
    ASSERT_GT(::poll(&p, 1, 1000), 0) << "no interim response";
    const ssize_t n = ::recv(expecting.fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::string(buf, size_t(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  }
  // Refused on the spot, before any body byte: over the limit, a huge head, a bad expectation.
  for (const auto& [req, status] : std::vector<std::pair<std::string, std::string>>{
           {post + "Content-Length: 5000000\r\n\r\n", "413"},
           {post + "Expect: 100-continue\r\nContent-Length: 5000000\r\n\r\n", "413"},
           {post + "X-Pad: " + std::string(70000, 'a'), "431"},
           {post + "Expect: later\r\nContent-Length: 3\r\n\r\n", "417"},
           {post + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", "400"},
           {post + "Transfer-Encoding: \xff\xfe\r\n\r\n", "400"},  // not UTF-8, quoted in the JSON answer
           {"GET /v2/\xff\xfe HTTP/1.1\r\nConnection: close\r\n\r\n", "404"}}) {
    Raw r(s.port);
    r.send(req);
    const auto [out, secs] = r.read_all(3);
    EXPECT_EQ(out.rfind("HTTP/1.1 " + status, 0), 0u) << out.substr(0, 200);
    EXPECT_NE(out.find("\"error\""), std::string::npos);
    EXPECT_LT(secs, 0.5);
  }
  // A body over the limit sent in full at once (what most clients do): the
  // answer is read before the close, never lost to a reset.
  for (int i = 0; i < 3; ++i) {
    Raw r(s.port);
    r.send(post + "Content-Length: 1100000\r\n\r\n" + std::string(1100000, ' '));
    const auto [out, secs] = r.read_all(3);
    EXPECT_EQ(out.rfind("HTTP/1.1 413", 0), 0u) << out.substr(0, 200);
  }
  // The one thread is free: a valid request is answered at once.
  const auto t0 = std::chrono::steady_clock::now();
  auto plain = s.client().Post("/v1/score", body, "application/json");
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.5);
  const double energy = json::parse(plain->body)["results"][0]["energy"].get<double>();
  // Both held-back requests finish and get the same energy as the plain one.
  std::snprintf(hex, sizeof hex, "%zx", body.size() - half);
  chunked.send(std::string(hex) + "\r\n" + body.substr(half) + "\r\n0\r\n\r\n");
  expecting.send(body);
  for (Raw* r : {&chunked, &expecting}) {
    ::shutdown(r->fd, SHUT_WR);
    const auto [out, secs] = r->read_all(3);
    ASSERT_EQ(out.rfind("HTTP/1.1 200", 0), 0u) << out.substr(0, 200);
    EXPECT_EQ(out.find("100 Continue"), std::string::npos) << "a second interim response";
    const json j = json::parse(out.substr(out.find("\r\n\r\n") + 4));
    EXPECT_NEAR(j["results"][0]["energy"].get<double>(), energy, 1e-6 * std::fabs(energy));
  }
  const std::string m = s.svc.metrics().render();
  EXPECT_NE(m.find("ebm_requests_total{endpoint=\"other\",status=\"413\"} 5"), std::string::npos) << m;
}

TEST(ServeAbuse, IdleConnectionsHoldNoThreadAndTheCapEvictsTheOldest) {
  // 2 HTTP threads, 1,500 idle connections (the 10,000 case runs in cli.serve_load,
  // from a separate process), half stopped mid-request line.
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 3000) GTEST_SKIP() << "needs 3,000 open files (ulimit -Hn)";
  Running s(fmnist_spec(), ServeOptions().http_threads(2).max_connections(1000));
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 1500; ++i) {
    idle.push_back(std::make_unique<Raw>(s.port));
    if (i % 2) idle.back()->send("GET /v2/health/li");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  json img = json::array();
  for (int r = 0; r < 28; ++r) img.push_back(std::vector<double>(28, 0.5));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = s.client().Post("/v1/score", json{{"images", {img}}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  const std::string m = s.svc.metrics().render();
  // Beyond the cap of 1,000 the longest-idle connections (with no request begun) made room.
  EXPECT_NE(m.find("ebm_connections_closed_total{reason=\"evicted\"}"), std::string::npos);
  std::smatch open;
  ASSERT_TRUE(std::regex_search(m, open, std::regex("ebm_open_connections (\\d+)")));
  EXPECT_LE(std::stoi(open[1]), 1001);
}
}  // namespace
}  // namespace ebm::serve
