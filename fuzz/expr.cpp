// fuzz/expr.cpp: the compose expression parser (src/core/expr.cpp).
//
// Beyond "only UsageError": a parsed expression prints as canonical text
// (Expr::str) that parses again to the same canonical text, and every node
// has the operand count expr.h promises.
#include "ebm/core/expr.h"
#include "fuzz_common.h"

namespace {

void check_tree(const ebm::Expr& e) {
  using K = ebm::Expr::Kind;
  const size_t n = e.kids.size();
  const bool ok = (e.kind == K::Atom && n == 0 && !e.atom.empty()) ||
                  ((e.kind == K::And || e.kind == K::Or) && n >= 2) ||
                  ((e.kind == K::Not || e.kind == K::Weight) && n == 1);
  if (!ok) ebm::fuzz::finding("malformed node in \"" + e.str() + "\"");
  for (const auto& k : e.kids) check_tree(k);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ebm::fuzz::expect_data_errors([&] {
    const ebm::Expr e = ebm::parse_expr(text);
    check_tree(e);
    std::vector<std::pair<std::string, bool>> atoms;
    e.atoms(atoms);
    if (atoms.empty()) ebm::fuzz::finding("an expression without atoms");
    const std::string canon = e.str();
    ebm::Expr again;
    try {
      again = ebm::parse_expr(canon);
    } catch (const ebm::UsageError& err) {
      // The canonical text parenthesises the root and an AND inside an OR, so
      // at the parser's nesting limit it may be up to two levels deeper than
      // the input: that refusal is the limit, not a bug.
      if (std::string(err.what()).find("nests deeper") != std::string::npos) return;
      ebm::fuzz::finding("canonical text does not parse: \"" + canon + "\": " + err.what());
    }
    if (again.str() != canon)
      ebm::fuzz::finding("canonical text is not stable: \"" + canon + "\" -> \"" + again.str() + "\"");
  });
  return 0;
}
