// expr.cpp: a recursive-descent parser for the composition language (expr.h).
#include "ebm/core/expr.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "ebm/core/common.h"

namespace ebm {

namespace {

// How deeply '(', '!' and weights may nest: deeper input is a UsageError, not a stack overflow.
constexpr int kMaxExprDepth = 100;

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; }

class Parser {
 public:
  explicit Parser(const std::string& t) : t_(t) {}

  Expr parse() {
    skip();
    if (i_ == t_.size()) fail("empty expression; expected an attribute value such as digit=3");
    Expr e = parse_or();
    skip();
    if (i_ != t_.size()) fail(std::string("unexpected '") + t_[i_] + "'; expected '&', '|' or the end");
    return e;
  }

 private:
  const std::string& t_;
  size_t i_ = 0;
  int depth_ = 0;  // open '(', '!' and weights around the current operand

  // Recursion depth is bounded, so no input can overflow the stack.
  struct Nest {
    Parser& p;
    explicit Nest(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxExprDepth)
        p.fail("expression nests deeper than " + std::to_string(kMaxExprDepth) + " levels of '(', '!' or weights");
    }
    ~Nest() { --p.depth_; }
  };

  int col() const { return int(i_) + 1; }
  [[noreturn]] void fail(const std::string& what) const {
    const std::string text = t_.size() > 200 ? t_.substr(0, 200) + "..." : t_;  // the message stays readable
    throw UsageError(what + " at column " + std::to_string(col()) + " in \"" + text + "\"");
  }
  void skip() {
    while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < t_.size() && t_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  Expr parse_or() { return parse_chain('|', Expr::Kind::Or, &Parser::parse_and); }
  Expr parse_and() { return parse_chain('&', Expr::Kind::And, &Parser::parse_unary); }

  // operand (op operand)*: one flat node with >= 2 operands, or the lone operand.
  Expr parse_chain(char op, Expr::Kind kind, Expr (Parser::*operand)()) {
    skip();
    Expr first = (this->*operand)();
    if (!(skip(), i_ < t_.size() && t_[i_] == op)) return first;
    Expr e;
    e.kind = kind;
    e.column = first.column;
    e.kids.push_back(std::move(first));
    while (eat(op)) e.kids.push_back((this->*operand)());
    return e;
  }

  Expr parse_unary() {
    Nest nest(*this);
    skip();
    const int c = col();
    if (i_ == t_.size()) fail("expected attribute value");
    if (eat('!')) {
      Expr e;
      e.kind = Expr::Kind::Not;
      e.column = c;
      e.kids.push_back(parse_unary());
      return e;
    }
    if (eat('(')) {
      Expr inner = parse_or();
      if (!eat(')')) fail("expected ')'");
      return inner;
    }
    // A number followed by '*' is a weight; a name may also start with a digit (digit values).
    if (std::isdigit(static_cast<unsigned char>(t_[i_])) || t_[i_] == '.' || t_[i_] == '-') {
      const char* begin = t_.c_str() + i_;
      char* end = nullptr;
      const double w = std::strtod(begin, &end);
      size_t j = i_ + size_t(end - begin);
      while (j < t_.size() && std::isspace(static_cast<unsigned char>(t_[j]))) ++j;
      if (end != begin && j < t_.size() && t_[j] == '*') {
        if (!std::isfinite(w)) fail("weight " + t_.substr(i_, size_t(end - begin)) + " is not a finite number");
        i_ = j + 1;
        Expr e;
        e.kind = Expr::Kind::Weight;
        e.weight = w;
        e.column = c;
        e.kids.push_back(parse_unary());
        return e;
      }
    }
    return parse_atom();
  }

  std::string name(const char* what) {
    skip();
    const size_t s = i_;
    while (i_ < t_.size() && name_char(t_[i_])) ++i_;
    if (i_ == s) fail(std::string("expected ") + what);
    return t_.substr(s, i_ - s);
  }

  Expr parse_atom() {
    skip();
    Expr e;
    e.column = col();
    if (t_.compare(i_, 6, "model:") == 0) {
      i_ += 6;
      const size_t s = i_;
      while (i_ < t_.size() && !std::isspace(static_cast<unsigned char>(t_[i_])) && t_[i_] != ')' &&
             t_[i_] != '&' && t_[i_] != '|')
        ++i_;
      if (i_ == s) fail("expected a model path after 'model:'");
      e.atom = "model:" + t_.substr(s, i_ - s);
      return e;
    }
    e.atom = name("attribute value");
    if (eat('=')) e.atom += "=" + name("attribute value");
    return e;
  }
};

}  // namespace

Expr parse_expr(const std::string& text) { return Parser(text).parse(); }

std::string Expr::str() const {
  switch (kind) {
    case Kind::Atom:
      return atom;
    case Kind::Not:
      return "!" + kids[0].str();
    case Kind::Weight: {
      std::ostringstream s;
      s << weight << "*" << kids[0].str();
      return s.str();
    }
    case Kind::And:
    case Kind::Or: {
      std::string s = "(";
      for (size_t i = 0; i < kids.size(); ++i) s += (i ? (kind == Kind::And ? " & " : " | ") : "") + kids[i].str();
      return s + ")";
    }
  }
  return "";
}

void Expr::atoms(std::vector<std::pair<std::string, bool>>& out, bool positive) const {
  if (kind == Kind::Atom) {
    out.emplace_back(atom, positive);
    return;
  }
  for (const auto& k : kids) k.atoms(out, kind == Kind::Not ? !positive : positive);
}

}  // namespace ebm
