// test_plot.cpp: the shared canvas (io/plot.h) draws where it is told, dashes
// leave gaps, text has width, and save() writes a PNG that reads back.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/image_io.h"
#include "ebm/io/plot.h"
#include "scratch_dir.h"

namespace {

torch::Tensor pixels(const ebm::Canvas& c, const std::string& dir) {
  const std::string path = dir + "/c.png";
  c.save(path);
  return ebm::decode_png(ebm::read_file(path), path);  // [H,W] uint8
}

TEST(Plot, RectLineAndDashes) {
  const std::string dir = ebm::test::scratch_dir("plot", "canvas", true);
  ebm::Canvas c(60, 40);
  c.rect(2, 2, 9, 9, 0.0f);                // black square
  c.line(0, 20, 59, 20, 0.5f);             // solid grey line
  c.line(0, 30, 59, 30, 0.0f, 1, 5, 5);    // dashed: 5 on, 5 off
  const auto p = pixels(c, dir);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{40, 60}));
  EXPECT_EQ(p[5][5].item<int>(), 0);
  EXPECT_EQ(p[0][30].item<int>(), 255);  // untouched background stays white
  EXPECT_NEAR(p[20][30].item<int>(), 128, 3);
  // The dashed row has dark pixels and gaps of background.
  const auto row = p[30];
  EXPECT_GT((row < 64).sum().item<int64_t>(), 15);
  EXPECT_GT((row > 200).sum().item<int64_t>(), 15);
}

TEST(Plot, TextHasWidthAndInk) {
  const std::string dir = ebm::test::scratch_dir("plot", "text", true);
  EXPECT_GT(ebm::Canvas::text_width("AUROC 0.9"), ebm::Canvas::text_width("AU"));
  ebm::Canvas c(120, 30);
  const int64_t w = c.text(4, 4, "AUROC 0.9");
  EXPECT_EQ(w, ebm::Canvas::text_width("AUROC 0.9"));
  const auto p = pixels(c, dir);
  EXPECT_GT((p < 128).sum().item<int64_t>(), 20);
}

TEST(Plot, RejectsAbsurdSizes) {
  EXPECT_THROW(ebm::Canvas(0, 10), ebm::UsageError);
  EXPECT_THROW(ebm::Canvas(10, 100000), ebm::UsageError);
}

}  // namespace
