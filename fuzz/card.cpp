// fuzz/card.cpp: model cards through the model registry (load_card,
// load_model, model_hash in src/core/models.cpp) and the ensemble loader
// (load_ensemble, src/core/ensemble.cpp).
//
// The input is the card.json of a model folder <scratch>/m. Next to it the
// harness keeps a real native model, <scratch>/native (conv-ebm, width 2), so
// that an ensemble card can name a member that exists: "../native". Every
// "@HASH@" in the input is replaced by that member's model_hash, which lets
// the seeds reach past the hash check (the fuzzer cannot guess a SHA-256).
#include "ebm/core/models.h"
#include "fuzz_common.h"

#include <filesystem>

namespace {

const std::string& member_hash() {
  static const std::string h = [] {
    ebm::fuzz::init_torch();
    torch::manual_seed(0);
    ebm::NativeModel m(ebm::json{{"type", "conv-ebm"}, {"width", 2}});
    ebm::save_model(ebm::fuzz::scratch_dir() + "/native", m);
    std::filesystem::create_directories(ebm::fuzz::scratch_dir() + "/m");
    return ebm::model_hash(ebm::fuzz::scratch_dir() + "/native");
  }();
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& hash = member_hash();
  std::string card(reinterpret_cast<const char*>(data), size);
  for (size_t at = card.find("@HASH@"); at != std::string::npos; at = card.find("@HASH@", at + hash.size()))
    card.replace(at, 6, hash);
  const std::string dir = ebm::fuzz::scratch_dir() + "/m";
  ebm::fuzz::write_bytes(dir + "/card.json", card);
  ebm::fuzz::expect_data_errors([&] { (void)ebm::model_hash(dir); });
  ebm::fuzz::expect_data_errors([&] {
    ebm::EnergyPtr e = ebm::load_model(dir);
    // A model that loads answers one image with one finite energy.
    torch::NoGradGuard ng;
    const torch::Tensor x = torch::full({1, 1, 28, 28}, 0.5f);
    torch::Tensor out;
    try {
      out = e->energy(x);
    } catch (const c10::Error&) {
      return;  // e.g. a 3-channel model given a grey image: a usage problem, not a loader one
    }
    if (out.dim() != 1 || out.size(0) != 1) ebm::fuzz::finding("energy of one image has shape " + c10::str(out.sizes()));
  });
  return 0;
}
