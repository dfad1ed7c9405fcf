// frame_request (serve/framing.h) against an independent oracle: requests are
// built here with a known end, fed in random pieces, and the verdict must stay
// Incomplete until the last byte and then name that end exactly. The resumable
// chunk scan must agree with a fresh scan of the same prefix.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "ebm/serve/framing.h"

namespace ebm::serve {
namespace {

using State = Framing::State;

Framing frame(const std::string& s, size_t max_body = 1 << 20, size_t max_head = 4096) {
  ChunkScan scan;
  return frame_request(s, max_body, max_head, scan);
}

// A chunked encoding of `body` with chunks of random sizes, optional
// extensions, and an optional trailer.
std::string chunked(const std::string& body, std::mt19937& rng, bool trailer) {
  std::string out;
  size_t at = 0;
  while (at < body.size()) {
    const size_t n = std::min(body.size() - at, size_t(1 + rng() % 40));
    char hex[32];
    std::snprintf(hex, sizeof hex, rng() % 2 ? "%zx" : "%zX", n);
    out += hex;
    if (rng() % 4 == 0) out += ";ext=1";
    out += "\r\n" + body.substr(at, n) + "\r\n";
    at += n;
  }
  out += "0\r\n";
  if (trailer) out += "X-Checksum: 1\r\nX-Other: 2\r\n";
  return out + "\r\n";
}

TEST(Framing, ContentLengthBodyCompleteExactlyAtItsLastByteInAnySplit) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    const std::string body(rng() % 300, 'b');
    const std::string req = "POST /v1/score HTTP/1.1\r\nHost: x\r\ncontent-length: " + std::to_string(body.size()) +
                            "\r\n\r\n" + body;
    const std::string next = "GET /v2 HTTP/1.1\r\n\r\n";  // a pipelined request after it
    for (size_t cut = 0; cut < req.size(); ++cut) {
      const Framing f = frame(req.substr(0, cut));
      ASSERT_EQ(f.state, State::Incomplete) << "cut " << cut;
    }
    const Framing f = frame(req + next);
    ASSERT_EQ(f.state, State::Complete);
    EXPECT_EQ(f.request_end, req.size());
    EXPECT_FALSE(f.chunked);
  }
}

TEST(Framing, ChunkedBodyCompleteExactlyAtItsLastByteAndResumingEqualsRescanning) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 60; ++trial) {
    std::string body(rng() % 500, ' ');
    for (char& c : body) c = char('a' + rng() % 26);
    const std::string head = "POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n";
    const std::string req = head + chunked(body, rng, trial % 3 == 0);
    // Feed it in random pieces, keeping one scan across calls (as the server does).
    ChunkScan resumed;
    size_t have = 0;
    while (have < req.size()) {
      have = std::min(req.size(), have + 1 + rng() % 23);
      const std::string prefix = req.substr(0, have);
      const Framing a = frame_request(prefix, 1 << 20, 4096, resumed);
      ChunkScan fresh;
      const Framing b = frame_request(prefix, 1 << 20, 4096, fresh);
      ASSERT_EQ(a.state, b.state) << "at " << have;
      if (have < req.size()) {
        ASSERT_EQ(a.state, State::Incomplete) << "at " << have << " of " << req.size();
      } else {
        ASSERT_EQ(a.state, State::Complete);
        EXPECT_EQ(a.request_end, req.size());
        EXPECT_EQ(resumed.decoded, body.size());
        EXPECT_TRUE(a.chunked);
      }
    }
  }
}

TEST(Framing, ExpectContinueIsLocatedSoItCanBeRemoved) {
  const std::string head = "POST /v1/score HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n";
  const Framing f = frame(head);
  EXPECT_EQ(f.state, State::Incomplete);
  ASSERT_TRUE(f.expect_continue);
  std::string without = head;
  without.erase(f.expect_line, f.expect_line_len);
  EXPECT_EQ(without, "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n");
  EXPECT_EQ(frame(without + "abcd").state, State::Complete);
  EXPECT_FALSE(frame(without).expect_continue);
}

TEST(Framing, NoBodyWithoutFramingHeaders) {
  const Framing f = frame("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /v2 HTTP/1.1\r\n");
  ASSERT_EQ(f.state, State::Complete);
  EXPECT_EQ(f.request_end, f.head_end);
  EXPECT_EQ(frame("GET /v2/health/li").state, State::Incomplete);
}

TEST(Framing, RefusalsCarryTheirStatus) {
  const std::string h = "POST /v1/score HTTP/1.1\r\nHost: x\r\n";
  struct Case {
    std::string req;
    int status;
  };
  const std::vector<Case> cases = {
      {h + "Content-Length: 2000000\r\n\r\n", 413},  // over max_body = 1 MiB
      {h + "Content-Length: -1\r\n\r\n", 400},
      {h + "Content-Length: 12abc\r\n\r\n", 400},
      {h + "Content-Length: 99999999999999999999999\r\n\r\n", 400},
      {h + "Content-Length: 4\r\nContent-Length: 5\r\n\r\n", 400},
      {h + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {h + "Transfer-Encoding: gzip, chunked\r\n\r\n", 400},
      {h + "Expect: something-else\r\n\r\n", 417},
      {h + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY", 400},                  // no CRLF after the data
      {h + "Transfer-Encoding: chunked\r\n\r\n200000\r\n", 413},                // one chunk over the limit
      {h + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 413},    // overflows 64 bits
      {h + "Transfer-Encoding: chunked\r\n\r\n" + std::string(2000, '1'), 400},  // a size line with no end
      {h + "Transfer-Encoding: chunked\r\n\r\n1;" + std::string(2000, 'e'), 400},
      {h + "X-Long: " + std::string(5000, 'a'), 431},                            // head over max_head = 4096
  };
  for (const auto& c : cases) {
    const Framing f = frame(c.req);
    EXPECT_EQ(f.state, State::Reject) << c.req.substr(0, 120);
    EXPECT_EQ(f.status, c.status) << c.req.substr(0, 120) << ": " << f.message;
    EXPECT_FALSE(f.message.empty());
  }
  // A quoted header value comes back printable (the message goes into JSON).
  for (const std::string& v : std::vector<std::string>{"gz\xff\xfe", std::string("a\0b", 3)}) {
    const Framing f = frame(h + "Transfer-Encoding: " + v + "\r\n\r\n");
    ASSERT_EQ(f.status, 400);
    for (char c : f.message) EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << f.message;
  }
  // Exactly at the limit is fine; one byte over is not.
  EXPECT_EQ(frame(h + "Content-Length: 3\r\n\r\nabc", 3).state, State::Complete);
  EXPECT_EQ(frame(h + "Content-Length: 4\r\n\r\nabcd", 3).status, 413);
}

TEST(Framing, ManyTinyChunksAreScannedOnceEach) {
  // 20,000 one-byte chunks arriving one at a time: with the resumable scan the
  // total work is linear. A rescanning parser would take ~2e8 steps here.
  std::string req = "POST /v1/score HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string buf = req;
  ChunkScan scan;
  for (int i = 0; i < 20000; ++i) {
    buf += "1\r\nx\r\n";
    ASSERT_EQ(frame_request(buf, 1 << 20, 4096, scan).state, State::Incomplete);
  }
  buf += "0\r\n\r\n";
  const Framing f = frame_request(buf, 1 << 20, 4096, scan);
  ASSERT_EQ(f.state, State::Complete);
  EXPECT_EQ(scan.decoded, 20000u);
}

}  // namespace
}  // namespace ebm::serve
