"""The composition language of `ebm compose` (include/ebm/core/expr.h):

    expr    := or
    or      := and ('|' and)*                 OR:  -logsumexp(-s*E_i)/s
    and     := unary ('&' unary)*             AND: sum of energies
    unary   := '!' unary                      NOT: -alpha * E
             | NUMBER '*' unary               weight: w * E
             | '(' expr ')' | atom
    atom    := NAME '=' VALUE | NAME | 'model:' PATH

parse_expr(text) gives the syntax tree; parse(text, env, ...) builds the same
energy as ebmkit's build_energy() (src/compose/attributes.cpp).
"""
from __future__ import annotations

import json
import os
import re
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from .energy import NOT_WEIGHT, OR_TEMPERATURE, ClassEnergy, Or, Sum

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _name_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in "_.-")


class Expr:
    """A node: kind is "atom", "and", "or", "not" or "weight"."""

    def __init__(self, kind: str, atom: str = "", weight: float = 1.0, kids=None, column: int = 1):
        self.kind, self.atom, self.weight, self.kids, self.column = kind, atom, weight, kids or [], column

    def __str__(self) -> str:
        if self.kind == "atom":
            return self.atom
        if self.kind == "not":
            return "!" + str(self.kids[0])
        if self.kind == "weight":
            return f"{self.weight:g}*{self.kids[0]}"
        sep = " & " if self.kind == "and" else " | "
        return "(" + sep.join(str(k) for k in self.kids) + ")"

    def __repr__(self) -> str:
        return f"Expr({str(self)!r})"

    def atoms(self, positive: bool = True) -> List[Tuple[str, bool]]:
        """Every atom, left to right, with its polarity (False under an odd number of '!')."""
        if self.kind == "atom":
            return [(self.atom, positive)]
        out: List[Tuple[str, bool]] = []
        for k in self.kids:
            out += k.atoms(not positive if self.kind == "not" else positive)
        return out


class _Parser:
    def __init__(self, text: str):
        self.t, self.i = text, 0

    def fail(self, what: str):
        raise ValueError(f"{what} at column {self.i + 1} in \"{self.t}\"")

    def skip(self):
        while self.i < len(self.t) and self.t[self.i].isspace():
            self.i += 1

    def eat(self, c: str) -> bool:
        self.skip()
        if self.i < len(self.t) and self.t[self.i] == c:
            self.i += 1
            return True
        return False

    def parse(self) -> Expr:
        self.skip()
        if self.i == len(self.t):
            self.fail("empty expression; expected an attribute value such as digit=3")
        e = self.parse_or()
        self.skip()
        if self.i != len(self.t):
            self.fail(f"unexpected '{self.t[self.i]}'; expected '&', '|' or the end")
        return e

    def parse_or(self) -> Expr:
        return self.chain("|", "or", self.parse_and)

    def parse_and(self) -> Expr:
        return self.chain("&", "and", self.parse_unary)

    def chain(self, op: str, kind: str, operand) -> Expr:
        self.skip()
        first = operand()
        self.skip()
        if not (self.i < len(self.t) and self.t[self.i] == op):
            return first
        e = Expr(kind, column=first.column, kids=[first])
        while self.eat(op):
            e.kids.append(operand())
        return e

    def parse_unary(self) -> Expr:
        self.skip()
        col = self.i + 1
        if self.i == len(self.t):
            self.fail("expected attribute value")
        if self.eat("!"):
            return Expr("not", column=col, kids=[self.parse_unary()])
        if self.eat("("):
            inner = self.parse_or()
            if not self.eat(")"):
                self.fail("expected ')'")
            return inner
        # A number followed by '*' is a weight; a name may also start with a digit.
        if self.t[self.i].isdigit() or self.t[self.i] in ".-":
            m = _NUMBER.match(self.t, self.i)
            if m:
                j = m.end()
                while j < len(self.t) and self.t[j].isspace():
                    j += 1
                if j < len(self.t) and self.t[j] == "*":
                    self.i = j + 1
                    return Expr("weight", weight=float(m.group(0)), column=col, kids=[self.parse_unary()])
        return self.parse_atom()

    def name(self, what: str) -> str:
        self.skip()
        s = self.i
        while self.i < len(self.t) and _name_char(self.t[self.i]):
            self.i += 1
        if self.i == s:
            self.fail("expected " + what)
        return self.t[s:self.i]

    def parse_atom(self) -> Expr:
        self.skip()
        e = Expr("atom", column=self.i + 1)
        if self.t.startswith("model:", self.i):
            self.i += 6
            s = self.i
            while self.i < len(self.t) and not self.t[self.i].isspace() and self.t[self.i] not in ")&|":
                self.i += 1
            if self.i == s:
                self.fail("expected a model path after 'model:'")
            e.atom = "model:" + self.t[s:self.i]
            return e
        e.atom = self.name("attribute value")
        if self.eat("="):
            e.atom += "=" + self.name("attribute value")
        return e


def parse_expr(text: str) -> Expr:
    """The syntax tree of `text`; ValueError("... at column N ...") on a syntax error."""
    return _Parser(text).parse()


# ------------------------------------------------------------------ atoms

class Attributes(Mapping):
    """Atoms of attribute models (`ebm train --task attribute` folders), as
    AttributeSet: "name=value", or an alias naming a value of exactly one
    attribute. Each atom is the ClassEnergy of its model, read as the card
    says ("class_energy": "nll" by default) at its calibrated temperature."""

    def __init__(self, paths: Sequence[str]):
        from .loading import load, load_card
        self.models = []
        for p in paths:
            card = load_card(p)
            a = card.get("attribute")
            if not isinstance(a, dict) or "attribute" not in a or not isinstance(a.get("classes"), list):
                raise ValueError(f"'{p}' is not an attribute model (its card has no \"attribute\": "
                                 "{\"attribute\", \"classes\"})")
            name = a["attribute"]
            if any(m["name"] == name for m in self.models):
                raise ValueError(f"two models for attribute '{name}'")
            t = float(card.get("calibration", {}).get("temperature", 1.0))
            model = load(p)
            if model.num_classes != len(a["classes"]):
                raise ValueError(f"'{p}': the card lists {len(a['classes'])} classes, the model has {model.num_classes}")
            self.models.append({"path": p, "name": name, "classes": [str(c) for c in a["classes"]],
                                "nll": card.get("class_energy", "nll") == "nll", "temperature": t,
                                "model": model})

    def available(self) -> str:
        if not self.models:
            return "none"
        return ", ".join(m["name"] + "=" + "|".join(m["classes"]) for m in self.models)

    def resolve(self, atom: str) -> Tuple[int, int]:
        """(model index, class index) of an atom; KeyError naming what is available."""
        if "=" in atom:
            name, value = atom.split("=", 1)
            for i, m in enumerate(self.models):
                if m["name"] == name:
                    if value in m["classes"]:
                        return i, m["classes"].index(value)
                    raise KeyError(f"attribute '{name}' has no value '{value}' (available: {self.available()})")
            raise KeyError(f"unknown attribute '{name}' (available: {self.available()})")
        hits = []
        for i, m in enumerate(self.models):
            if m["name"] == atom:
                raise KeyError(f"attribute '{atom}' needs a value, e.g. {atom}={m['classes'][0]}")
            hits += [(i, c) for c, v in enumerate(m["classes"]) if v == atom]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise KeyError(f"'{atom}' is a value of several attributes; write name={atom}")
        raise KeyError(f"unknown attribute value '{atom}' (available: {self.available()})")

    def __getitem__(self, atom: str) -> nn.Module:
        i, c = self.resolve(atom)
        m = self.models[i]
        return ClassEnergy(m["model"], c, m["nll"], m["temperature"])

    def __iter__(self):
        for m in self.models:
            for v in m["classes"]:
                yield m["name"] + "=" + v

    def __len__(self) -> int:
        return sum(len(m["classes"]) for m in self.models)


def attributes(paths: Sequence[str]) -> Attributes:
    return Attributes(paths)


Env = Union[Mapping[str, nn.Module], Callable[[str], nn.Module]]


def _atom(atom: str, env: Optional[Env]) -> nn.Module:
    if env is not None:
        if callable(env) and not isinstance(env, Mapping):
            return env(atom)
        try:
            return env[atom]
        except KeyError:
            if not atom.startswith("model:"):
                raise
    if atom.startswith("model:"):
        from .loading import load
        return load(atom[len("model:"):])
    raise KeyError(f"no energy for atom '{atom}' (pass env)")


def _build(e: Expr, env, not_weight: float, s: float) -> nn.Module:
    if e.kind == "atom":
        return _atom(e.atom, env)
    if e.kind == "or":
        return Or([_build(k, env, not_weight, s) for k in e.kids], s, flatten=False)
    terms: List[Tuple[float, nn.Module]] = []
    _and_terms(e, 1.0, env, not_weight, s, terms)
    return Sum(terms, flatten=False)


def _and_terms(e: Expr, w: float, env, not_weight: float, s: float, out) -> None:
    if e.kind == "and":
        for k in e.kids:
            _and_terms(k, w, env, not_weight, s, out)
    elif e.kind == "not":
        _and_terms(e.kids[0], -not_weight * w, env, not_weight, s, out)
    elif e.kind == "weight":
        _and_terms(e.kids[0], e.weight * w, env, not_weight, s, out)
    else:
        out.append((w, _build(e, env, not_weight, s)))


def parse(text: Union[str, Expr], env: Optional[Env] = None, *, not_weight: float = NOT_WEIGHT,
          or_temperature: float = OR_TEMPERATURE, prior: Optional[nn.Module] = None,
          prior_weight: float = 1.0, guidance: float = 1.0) -> nn.Module:
    """The energy of an expression, built as ebmkit's build_energy() builds it.

    env maps atoms to energies (a dict, an Attributes, or a callable); atoms
    "model:PATH" not in env are loaded with ebmkit.load. not_weight is the
    alpha of '!', or_temperature the s of '|'. With a prior, or guidance != 1,
    the result is prior_weight * prior + guidance * E_expr (`ebm compose` uses
    guidance 200 and the prior models/mnist-dsm)."""
    if not not_weight >= 0:
        raise ValueError(f"not_weight must be >= 0, got {not_weight}")
    if not or_temperature > 0:
        raise ValueError(f"or_temperature must be > 0, got {or_temperature}")
    if not guidance > 0:
        raise ValueError(f"guidance must be > 0, got {guidance}")
    e = parse_expr(text) if isinstance(text, str) else text
    body = _build(e, env, float(not_weight), float(or_temperature))
    if (prior is None or prior_weight == 0) and guidance == 1.0:
        return body
    terms = [(float(guidance), body)]
    if prior is not None and prior_weight != 0:
        terms.insert(0, (float(prior_weight), prior))
    return Sum(terms, flatten=False)
