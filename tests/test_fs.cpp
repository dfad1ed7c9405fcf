// core/fs.h: SHA-256 against FIPS 180-4 test vectors and Python's hashlib
// (values computed with hashlib.sha256 and pasted here), including the
// padding boundaries (55, 56 and 64 bytes); make_dirs; atomic writes.
#include <gtest/gtest.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "scratch_dir.h"

using namespace ebm;

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundariesMatchHashlib) {
  // 55 bytes: the length fits in the same block; 56: it spills into a second
  // block; 64: exactly one full block before padding.
  EXPECT_EQ(sha256_hex(std::string(55, 'x')), "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
  EXPECT_EQ(sha256_hex(std::string(56, 'x')), "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e");
  EXPECT_EQ(sha256_hex(std::string(64, 'x')), "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c");
}

TEST(Sha256, FileEqualsBytes) {
  const std::string d = test::scratch_dir("fs_", "sha", true);
  write_file_atomic(d + "/f.bin", std::string("abc"));
  EXPECT_EQ(sha256_file(d + "/f.bin"), sha256_hex("abc"));
  EXPECT_THROW(sha256_file(d + "/missing"), DataError);
}

TEST(Fs, MakeDirsCreatesParentsAndRefusesFiles) {
  const std::string d = test::scratch_dir("fs_", "mkdirs", true);
  make_dirs(d + "/a/b/c");
  EXPECT_TRUE(is_dir(d + "/a/b/c"));
  make_dirs(d + "/a/b/c/");  // idempotent, trailing slash accepted
  write_file_atomic(d + "/file", "x");
  EXPECT_TRUE(is_file(d + "/file"));
  EXPECT_FALSE(is_dir(d + "/file"));
  EXPECT_THROW(make_dirs(d + "/file/sub"), DataError);
  EXPECT_THROW(make_dirs(""), DataError);
}

TEST(Fs, AtomicWriteReplacesOrLeavesUntouched) {
  const std::string d = test::scratch_dir("fs_", "atomic", true);
  write_file_atomic(d + "/r.json", "one");
  write_file_atomic(d + "/r.json", "two");
  EXPECT_EQ(read_file(d + "/r.json"), "two");
  // A folder that does not exist: the write fails and nothing appears.
  EXPECT_THROW(write_file_atomic(d + "/no/such/r.json", "x"), DataError);
  EXPECT_FALSE(path_exists(d + "/no"));
  EXPECT_THROW(read_file(d + "/absent"), DataError);
}
