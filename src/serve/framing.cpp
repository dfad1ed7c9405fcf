#include "ebm/serve/framing.h"

#include <cctype>

namespace ebm::serve {

namespace {

char lower(char c) { return char(std::tolower(static_cast<unsigned char>(c))); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A header value quoted in a message: at most 40 bytes, printable ASCII only
// (the message goes into a JSON body, and JSON refuses invalid UTF-8).
std::string quoted(std::string_view v) {
  std::string out(v.substr(0, 40));
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
  return out;
}

Framing reject(Framing f, int status, std::string message) {
  f.state = Framing::State::Reject;
  f.status = status;
  f.message = std::move(message);
  return f;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Framing frame_request(std::string_view buf, size_t max_body, size_t max_head, ChunkScan& scan) {
  Framing f;
  const size_t end = buf.find("\r\n\r\n");
  // The rule is "the blank line starts within max_head bytes"; a buffer with
  // no blank line yet breaks it only once a blank line could no longer start
  // in time, so a prefix of an acceptable request is never refused.
  if (end == std::string_view::npos) {
    if (buf.size() >= max_head + 4) return reject(f, 431, "request head over " + std::to_string(max_head) + " bytes");
    return f;
  }
  if (end > max_head) return reject(f, 431, "request head over " + std::to_string(max_head) + " bytes");
  f.head_end = end + 4;

  // Header fields: every line after the request line, up to the blank line.
  bool has_length = false, has_te = false;
  uint64_t length = 0;
  for (size_t line = buf.find("\r\n"); line < end;) {
    const size_t at = line + 2;
    const size_t next = buf.find("\r\n", at);  // <= end: the head ends in CRLF CRLF
    const std::string_view field = buf.substr(at, next - at);
    const size_t colon = field.find(':');
    if (colon != std::string_view::npos) {
      const std::string_view name = field.substr(0, colon), value = trim(field.substr(colon + 1));
      if (iequals(name, "content-length")) {
        if (value.empty() || value.size() > 19) return reject(f, 400, "malformed Content-Length");
        uint64_t v = 0;
        for (char c : value) {
          if (c < '0' || c > '9') return reject(f, 400, "malformed Content-Length");
          v = v * 10 + uint64_t(c - '0');
        }
        if (has_length && v != length) return reject(f, 400, "two different Content-Length values");
        has_length = true;
        length = v;
      } else if (iequals(name, "transfer-encoding")) {
        if (!iequals(value, "chunked"))
          return reject(f, 400, "unsupported Transfer-Encoding '" + quoted(value) + "' (only chunked)");
        has_te = true;
      } else if (iequals(name, "expect")) {
        if (!iequals(value, "100-continue"))
          return reject(f, 417, "unsupported Expect '" + quoted(value) + "' (only 100-continue)");
        f.expect_continue = true;
        f.expect_line = at;
        f.expect_line_len = next + 2 - at;
      }
    }
    line = next;
  }
  if (has_length && has_te) return reject(f, 400, "both Content-Length and Transfer-Encoding");
  auto over = [&] { return reject(f, 413, "request body over the limit of " + std::to_string(max_body) + " bytes"); };

  if (!has_te) {
    if (length > max_body) return over();
    if (buf.size() - f.head_end < length) return f;
    f.state = Framing::State::Complete;
    f.request_end = f.head_end + size_t(length);
    return f;
  }

  // Chunked: resume at the first chunk-size line not yet read.
  f.chunked = true;
  const std::string_view body = buf.substr(f.head_end);
  for (;;) {
    if (scan.last) {
      // The trailer: field lines, then an empty line. `next` is its first byte.
      if (body.size() < scan.next + 2) return f;
      if (body.substr(scan.next, 2) == "\r\n") {
        f.state = Framing::State::Complete;
        f.request_end = f.head_end + scan.next + 2;
        return f;
      }
      const size_t t = body.find("\r\n\r\n", scan.next);
      auto trailer_over = [&] { return reject(f, 431, "chunked trailer over " + std::to_string(max_head) + " bytes"); };
      if (t == std::string_view::npos) {
        if (body.size() - scan.next >= max_head + 4) return trailer_over();
        return f;
      }
      if (t - scan.next > max_head) return trailer_over();
      f.state = Framing::State::Complete;
      f.request_end = f.head_end + t + 4;
      return f;
    }
    // chunk-size [; extensions] CRLF, at most kLine bytes before the CRLF (a
    // buffer without the CRLF yet is refused only once the line must be longer).
    constexpr size_t kLine = 1024;
    auto long_line = [&] { return reject(f, 400, "malformed chunk size line (over " + std::to_string(kLine) + " bytes)"); };
    const size_t eol = body.find("\r\n", scan.next);
    if (eol == std::string_view::npos) {
      if (body.size() - scan.next > kLine + 1) return long_line();
      return f;
    }
    if (eol - scan.next > kLine) return long_line();
    const std::string_view line = body.substr(scan.next, eol - scan.next);
    uint64_t size = 0;
    size_t digits = 0;
    for (; digits < line.size(); ++digits) {
      const int d = hex_digit(line[digits]);
      if (d < 0) break;
      if (digits >= 15) return over();  // more than 2^60: over any limit
      size = size * 16 + uint64_t(d);
    }
    const std::string_view rest = trim(line.substr(digits));
    if (digits == 0 || (!rest.empty() && rest.front() != ';'))
      return reject(f, 400, "malformed chunk size line");
    const size_t data = eol + 2;
    if (data > max_body) return over();  // the body as sent, framing included, is what max_body bounds
    if (size == 0) {
      scan.next = data;
      scan.last = true;
      continue;
    }
    if (size > max_body || data + size + 2 > max_body) return over();
    if (body.size() < data + size + 2) return f;  // the chunk's data and its CRLF have not all arrived
    if (body.substr(data + size, 2) != "\r\n") return reject(f, 400, "malformed chunk (no CRLF after its data)");
    scan.decoded += size;
    scan.next = data + size + 2;
  }
}

}  // namespace ebm::serve
