// fuzz/http_framing.cpp: the server's request framing (src/serve/framing.cpp),
// which decides from raw socket bytes when a request has fully arrived.
//
// Beyond the sanitizers (it must never throw): the verdict on the whole input
// equals the verdict reached by feeding the same bytes in pieces with one
// resumed ChunkScan, as the server's connection parker does; a Complete
// request ends inside the input and after its head; a refusal carries one of
// the documented statuses and a printable message.
#include <string>
#include <string_view>

#include "ebm/serve/framing.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ebm::serve::ChunkScan;
  using ebm::serve::Framing;
  using ebm::serve::frame_request;
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  constexpr size_t kBody = 4096, kHead = 1024;  // small limits, so the fuzzer reaches them
  ChunkScan whole_scan;
  const Framing whole = frame_request(all, kBody, kHead, whole_scan);

  if (whole.state == Framing::State::Complete) {
    if (whole.request_end > size || whole.request_end < whole.head_end)
      ebm::fuzz::finding("Complete with request_end outside [head_end, size]");
    if (!whole.chunked && whole.request_end - whole.head_end > kBody) ebm::fuzz::finding("a body over the limit accepted");
  } else if (whole.state == Framing::State::Reject) {
    const int s = whole.status;
    if ((s != 400 && s != 413 && s != 417 && s != 431) || whole.message.empty())
      ebm::fuzz::finding("refusal with status " + std::to_string(s) + " and message '" + whole.message + "'");
    for (char c : whole.message)  // it goes into a JSON body: printable ASCII only
      if (c < 0x20 || c > 0x7e) ebm::fuzz::finding("a refusal message with a non-printable byte");
  }

  // Arrival in pieces: the piece lengths come from the bytes themselves. Once
  // a verdict other than Incomplete is reached it must be the whole input's.
  ChunkScan scan;
  size_t have = 0;
  Framing last;
  while (have < size) {
    have = std::min(size, have + 1 + size_t(data[have]) % 29);
    last = frame_request(all.substr(0, have), kBody, kHead, scan);
    if (last.state != Framing::State::Incomplete) break;
  }
  if (size > 0 && last.state != whole.state)
    ebm::fuzz::finding("pieces gave state " + std::to_string(int(last.state)) + ", the whole input " +
                       std::to_string(int(whole.state)));
  if (whole.state == Framing::State::Complete && last.request_end != whole.request_end)
    ebm::fuzz::finding("pieces and the whole input end the request at different bytes");
  if (whole.state == Framing::State::Reject && last.status != whole.status)
    ebm::fuzz::finding("pieces and the whole input refuse with different statuses");
  return 0;
}
