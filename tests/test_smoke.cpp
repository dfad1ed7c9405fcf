#include <gtest/gtest.h>
#include "ebm/common.h"
TEST(Smoke, Version) { EXPECT_STREQ(ebm::version(), EBM_VERSION); }
