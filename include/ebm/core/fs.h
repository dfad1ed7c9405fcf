// fs.h: the file-system helpers every layer shares. One place for how ebmkit
// reads, writes, creates and fingerprints files.
//
// Errors: every function that fails on a user's path throws DataError naming
// the path (common.h).
#pragma once

#include <string>

namespace ebm {

/// True when `path` exists (file, folder or anything else).
bool path_exists(const std::string& path);
/// True when `path` is a folder.
bool is_dir(const std::string& path);
/// True when `path` is a regular file (symlinks followed).
bool is_file(const std::string& path);

/// Create `dir` and its missing parents (mkdir -p). A path that exists and is
/// not a folder is an error. Throws DataError.
void make_dirs(const std::string& dir);

/// Write `bytes` to `path` atomically: a temp file in the same folder, fsync,
/// then rename. A failure leaves any existing file untouched. Throws DataError.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Read a whole file; throws DataError naming the file when it cannot.
std::string read_file(const std::string& path);

/// SHA-256 of `bytes` (FIPS 180-4), as 64 lowercase hex digits.
std::string sha256_hex(const std::string& bytes);

/// SHA-256 of a file's content, as 64 lowercase hex digits. Throws DataError.
std::string sha256_file(const std::string& path);

}  // namespace ebm
