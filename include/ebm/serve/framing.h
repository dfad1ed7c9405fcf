// framing.h: has a whole HTTP/1.1 request arrived? The server's connection
// parker asks this of the bytes buffered on a connection, so that no request
// thread is handed a request before all of it is there (a thread blocked on a
// slow client's body is a thread no other client gets).
//
// The request's framing is read from its head as RFC 9112 section 6 says:
//   - Content-Length: N          the body is the next N bytes;
//   - Transfer-Encoding: chunked the body is a chunk sequence ending in a
//                                zero-size chunk and an optional trailer;
//   - neither                    no body.
// "Expect: 100-continue" asks the server to say "100 Continue" before the
// client sends the body; the verdict reports where that header line is so the
// parker can answer it itself and remove it (the request thread then sees an
// ordinary request and sends no second interim response).
//
// Refused at once, with the status to answer before closing the connection:
//   400  malformed Content-Length (not digits, or two different values),
//        both Content-Length and Transfer-Encoding (a request-smuggling
//        vector), a transfer coding other than "chunked", malformed chunk
//        framing (size line, missing CRLF after the data);
//   413  a Content-Length, or a chunked body with its framing, over max_body;
//   417  an Expect other than 100-continue;
//   431  a head (or a chunk trailer) longer than max_head without its end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ebm::serve {

/// What scanning a chunked body has established so far, so that each new
/// arrival is scanned from where the last scan stopped (a client sending
/// one-byte chunks must not make every arrival rescan the whole body).
/// Reset it (= {}) whenever a new request begins.
struct ChunkScan {
  size_t next = 0;       ///< offset, from the body's first byte, of the next chunk-size line
  uint64_t decoded = 0;  ///< payload bytes in the chunks before `next`
  bool last = false;     ///< the zero-size chunk is behind `next` (now in the trailer)
};

struct Framing {
  enum class State { Incomplete, Complete, Reject };
  State state = State::Incomplete;
  int status = 0;               ///< Reject: the status to answer with
  std::string message;          ///< Reject: why, in one line
  size_t head_end = 0;          ///< when the head has arrived: the offset just past its blank line
  size_t request_end = 0;       ///< Complete: the offset just past the request's last byte
  bool chunked = false;
  bool expect_continue = false;  ///< the head carries "Expect: 100-continue"
  size_t expect_line = 0;        ///< ... at this offset (its line, CRLF included,
  size_t expect_line_len = 0;    ///<     is this long)
};

/// The verdict on `buf`, which holds the first bytes of one request (and maybe
/// more after it). `max_body` bounds the body as sent (chunk framing
/// included); `max_head` bounds the head and a chunked trailer. `scan` carries
/// the chunked scan across calls on a growing buffer; pass the same object
/// until the request is handed on.
Framing frame_request(std::string_view buf, size_t max_body, size_t max_head, ChunkScan& scan);

}  // namespace ebm::serve
