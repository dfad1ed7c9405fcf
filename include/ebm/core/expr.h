// expr.h: the composition expression language of `ebm compose`.
//
//   expr    := or
//   or      := and ('|' and)*                 OR:  -logsumexp(-s*E_i)/s
//   and     := unary ('&' unary)*             AND: sum of energies
//   unary   := '!' unary                      NOT: -alpha * E
//            | NUMBER '*' unary               weight: w * E
//            | '(' expr ')' | atom
//   atom    := NAME '=' VALUE                 an attribute value, e.g. digit=3, thickness=thin
//            | NAME                           an alias: a value of exactly one attribute (thin, thick)
//            | 'model:' PATH                  a whole model's energy
//
// Whitespace is free. Names and values are [A-Za-z0-9_.-]+. Errors are
// UsageErrors that name the column (1-based): "expected attribute value at column 9".
// Parsing knows nothing about models; resolving atoms is the caller's job
// (attributes.h), so the grammar is testable on its own.
#pragma once

#include <string>
#include <vector>

namespace ebm {

struct Expr {
  enum class Kind { Atom, And, Or, Not, Weight };
  Kind kind = Kind::Atom;
  /// Atom: "digit=3", "thin" or "model:path" as written (spaces removed).
  std::string atom;
  /// Weight: the number before '*'.
  double weight = 1.0;
  /// And/Or: >= 2 operands; Not/Weight: exactly 1.
  std::vector<Expr> kids;
  /// 1-based column where the node starts (for error messages).
  int column = 1;

  /// Canonical text, fully parenthesised where needed: "(digit=3 & !thick)".
  std::string str() const;
  /// Every atom in the tree, left to right, with its polarity (false under an odd number of '!').
  void atoms(std::vector<std::pair<std::string, bool>>& out, bool positive = true) const;
};

/// Parse `text`; throws UsageError("... at column N") on a syntax error.
Expr parse_expr(const std::string& text);

}  // namespace ebm
