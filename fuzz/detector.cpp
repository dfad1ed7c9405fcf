// fuzz/detector.cpp: the OOD detector file loader (Detector::load ->
// Detector::from_json, src/ood/detector.cpp). A detector that loads must
// survive its own round trip (to_json -> from_json) and answer p_value.
#include "ebm/ood/ood.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ebm::fuzz::init_torch();
  const std::string path = ebm::fuzz::scratch_dir() + "/x.detector.json";
  ebm::fuzz::write_bytes(path, std::string(reinterpret_cast<const char*>(data), size));
  ebm::fuzz::expect_data_errors([&] {
    const ebm::Detector d = ebm::Detector::load(path);
    const double p = d.p_value(d.threshold);
    if (!(p > 0 && p <= 1)) ebm::fuzz::finding("p_value(threshold) = " + std::to_string(p));
    (void)d.is_ood(d.threshold);
    ebm::Detector again;
    try {
      again = ebm::Detector::from_json(d.to_json(), "round trip");
    } catch (const std::exception& e) {
      ebm::fuzz::finding(std::string("a loaded detector does not survive to_json -> from_json: ") + e.what());
    }
    if (again.val_scores != d.val_scores || again.score != d.score || again.threshold != d.threshold)
      ebm::fuzz::finding("round trip changed the detector");
  });
  return 0;
}
