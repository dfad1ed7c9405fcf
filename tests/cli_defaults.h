// cli_defaults.h: checks that a subcommand's flag defaults are its options
// struct's defaults. The CLI binds flags to library options structs; a test
// lists, for every flag that shows a default, the value the library struct
// holds, computed here from a default-constructed struct. A flag whose
// default was re-declared in the CLI (or a new flag nobody listed) fails.
#pragma once

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"

namespace ebm::test {

/// The whole `ebm` app, built once per process (the subcommands keep their
/// option storage in statics, as the real binary does).
inline CLI::App& ebm_app() {
  static CLI::App* app = [] {
    auto* a = new CLI::App;
    static cli::Action run;
    cli::build_app(*a, run);
    return a;
  }();
  return *app;
}

/// Flags that belong to the CLI itself, not to an options struct.
inline const std::set<std::string>& cli_only_flags() {
  static const std::set<std::string> s = {"--threads", "--seed", "--json", "--quiet", "--help"};
  return s;
}

/// A struct default rendered for comparison with CLI11's default string.
inline std::string show(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}
inline std::string show(int64_t v) { return std::to_string(v); }
inline std::string show(int v) { return std::to_string(v); }
inline std::string show(bool v) { return v ? "true" : "false"; }
inline std::string show(const std::string& v) { return v; }
inline std::string show(const char* v) { return v; }
inline std::string show(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + show(v[i]);
  return s + "]";
}

namespace detail {
// Numbers compare by value (CLI11 and iostreams print doubles differently);
// everything else compares as text.
inline bool same_default(const std::string& cli, const std::string& lib) {
  if (cli == lib) return true;
  char* e1 = nullptr;
  char* e2 = nullptr;
  const double a = std::strtod(cli.c_str(), &e1), b = std::strtod(lib.c_str(), &e2);
  if (!cli.empty() && !lib.empty() && *e1 == '\0' && *e2 == '\0') return a == b || std::fabs(a - b) <= 1e-12 * std::fabs(b);
  // Vectors: show() writes "[0.10000000000000001,0.2]"; CLI11 writes "[0.1,0.2]" or,
  // in Debian's version, "0.1 0.2". Compare element by element.
  if (!lib.empty() && lib.front() == '[') {
    auto split = [](const std::string& v) {
      std::vector<std::string> out;
      std::string cur;
      for (char c : v) {
        if (c == '[' || c == ']' || c == ',' || c == ' ') {
          if (!cur.empty()) out.push_back(cur);
          cur.clear();
        } else {
          cur += c;
        }
      }
      if (!cur.empty()) out.push_back(cur);
      return out;
    };
    const auto a = split(cli), b = split(lib);
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!same_default(a[i], b[i])) return false;
    return true;
  }
  return false;
}
}  // namespace detail

/// `path` is the subcommand path, e.g. {"train"} or {"compose", "eval"}.
/// `expected` maps each flag ("--steps") to the library default, via show().
/// Every flag of the subcommand that shows a default must be listed (or be a
/// CLI-only flag), and every listed flag must exist and show that default.
inline void expect_flag_defaults(const std::vector<std::string>& path,
                                 const std::map<std::string, std::string>& expected) {
  CLI::App* sub = &ebm_app();
  std::string where = "ebm";
  for (const auto& p : path) {
    sub = sub->get_subcommand(p);
    where += " " + p;
  }
  std::set<std::string> seen;
  for (const CLI::Option* opt : sub->get_options()) {
    const auto& names = opt->get_lnames();
    if (names.empty()) continue;
    const std::string flag = "--" + names.front();
    seen.insert(flag);
    if (cli_only_flags().count(flag)) continue;
    const std::string cli = opt->get_default_str();
    const auto it = expected.find(flag);
    if (it == expected.end()) {
      EXPECT_TRUE(cli.empty()) << where << " " << flag << " shows default '" << cli
                               << "' but the test lists no library default for it";
      continue;
    }
    EXPECT_TRUE(detail::same_default(cli, it->second))
        << where << " " << flag << ": CLI default '" << cli << "' != library default '" << it->second << "'";
  }
  for (const auto& [flag, v] : expected) EXPECT_TRUE(seen.count(flag)) << where << " has no flag " << flag;
}

}  // namespace ebm::test
