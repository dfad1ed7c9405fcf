"""The energy algebra: plain-PyTorch twins of include/ebm/core/compose.h.

Every energy here is a ``torch.nn.Module`` with ``energy(x[B,C,H,W]) -> [B]``
(low energy = likely). Compositions are energies too, so they nest:

    AND     a & b          E = sum_i w_i E_i            (Sum)
    weight  w * a          E = w * E_a                  (Sum with one term)
    NOT     ~a             E = -NOT_WEIGHT * E_a        (the expression language's `!`)
    minus   a - b          E = E_a - E_b                (make_not(a, b, alpha=1))
    OR      a | b          E = -logsumexp(-s * E_i) / s (Or, s = OR_TEMPERATURE)
    Affine(a, shift, scale)  E = (E_a - shift) / scale  (ensemble standardisation)
    ClassEnergy(clf, c)    E = -logits[c] / T  or  -log softmax(logits / T)[c]

Like the C++ expression builder (src/compose/attributes.cpp), ``&``, ``~`` and
weights flatten into one weighted sum: ``2 * (a & ~b)`` is
``Sum([(2, a), (-2 * NOT_WEIGHT, b)])``. Chains ``a | b | c`` with one
temperature flatten into one Or, as the parser builds ``a | b | c``.
"""

import numbers
from typing import List, Sequence, Tuple

import torch
from torch import nn

# The defaults of `ebm compose` (ComposeOptions in include/ebm/compose/attributes.h).
NOT_WEIGHT = 0.005
OR_TEMPERATURE = 1.0


def free_energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[B,K] logits -> [B] free energy -T*logsumexp(logits/T) (energy.cpp)."""
    if not temperature > 0:
        raise ValueError("temperature must be > 0, got " + str(temperature))
    if logits.dim() != 2:
        raise ValueError("free_energy wants logits [B,K], got rank " + str(logits.dim()))
    return -temperature * torch.logsumexp(logits / temperature, 1)


class Energy(nn.Module):
    """Base class: an nn.Module with energy(x) -> [B] and the algebra operators.

    Subclasses implement ``energy``; classifiers also ``logits`` and set
    ``num_classes`` > 0. ``forward`` is the energy unless a subclass says
    otherwise (classifiers return logits, as in ebmkit and its TorchScript).

    ``energy_at(x, sigma)`` is the energy at noise level sigma ([B] tensor or a
    float), as Energy::energy_at in C++. Here it ignores sigma (sigma-blind);
    the noise-conditional architectures (``noise_conditional`` True) override it.
    """

    num_classes: int = 0
    noise_conditional: bool = False
    # Cards are JSON of any shape: keep them out of TorchScript.
    __jit_ignored_attributes__ = ["card"]

    def energy(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)

    def energy_at(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The energy at noise level sigma: energy(x) unless overridden."""
        return self.energy(x)

    # ---------------------------------------------------------- operators
    def __and__(self, other):
        return and_(self, other)

    def __or__(self, other):
        return or_(self, other)

    def __invert__(self):
        return not_(self)

    def __neg__(self):
        return weighted(-1.0, self)

    def __mul__(self, w):
        if not isinstance(w, numbers.Real):
            return NotImplemented
        return weighted(float(w), self)

    def __rmul__(self, w):
        return self.__mul__(w)

    def __add__(self, other):
        if not isinstance(other, Energy):
            return NotImplemented
        return and_(self, other)

    def __sub__(self, other):
        if not isinstance(other, Energy):
            return NotImplemented
        return and_(self, weighted(-1.0, other))


class Sum(Energy):
    """sum_i w_i * E_i(x), evaluated term by term in order (SumEnergy)."""

    def __init__(self, terms: Sequence[Tuple[float, nn.Module]], flatten: bool = True):
        super().__init__()
        if len(terms) == 0:
            raise ValueError("Sum needs at least one term")
        self.weights: List[float] = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList([e for _, e in terms])
        # Sums built by the algebra merge into enclosing sums; a loaded ensemble
        # stays one atom (as a `model:` atom does in ebmkit).
        self.flatten = flatten
        self.noise_conditional = any(bool(getattr(e, "noise_conditional", False)) for e in self.terms)

    def energy_at(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Level by level: sum_i w_i * E_i(x, sigma) (SumEnergy::energy_at)."""
        return sum(w * t.energy_at(x, sigma) for w, t in zip(self.weights, self.terms))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.empty(0)
        first = True
        for i, t in enumerate(self.terms):
            e = t.energy(x) * self.weights[i]
            if first:
                total = e
                first = False
            else:
                total = total + e
        return total

    def extra_repr(self) -> str:
        return "weights=" + repr(self.weights)


class Or(Energy):
    """Soft minimum -logsumexp(-s*E_i)/s over the terms (OrEnergy)."""

    def __init__(self, terms: Sequence[nn.Module], temperature: float = OR_TEMPERATURE, flatten: bool = True):
        super().__init__()
        if len(terms) == 0:
            raise ValueError("Or needs at least one term")
        if not temperature > 0:
            raise ValueError(f"OR temperature must be > 0, got {temperature}")
        self.terms = nn.ModuleList(list(terms))
        self.temperature = float(temperature)
        self.flatten = flatten
        self.noise_conditional = any(bool(getattr(e, "noise_conditional", False)) for e in self.terms)

    def energy_at(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Level by level: the soft minimum of E_i(x, sigma) (OrEnergy::energy_at)."""
        s = self.temperature
        return -torch.logsumexp(torch.stack([t.energy_at(x, sigma) for t in self.terms], 1) * (-s), 1) / s

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        es: List[torch.Tensor] = []
        for t in self.terms:
            es.append(t.energy(x))
        s = self.temperature
        return -torch.logsumexp(torch.stack(es, 1) * (-s), 1) / s

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class Affine(Energy):
    """(E(x) - shift) / scale (AffineEnergy): puts energies on one scale."""

    def __init__(self, inner: nn.Module, shift: float, scale: float):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"energy calibration scale must be > 0, got {scale}")
        self.inner = inner
        self.shift = float(shift)
        self.scale = float(scale)
        self.noise_conditional = bool(getattr(inner, "noise_conditional", False))

    def energy_at(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return (self.inner.energy_at(x, sigma) - self.shift) / self.scale

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return (self.inner.energy(x) - self.shift) / self.scale

    def extra_repr(self) -> str:
        return f"shift={self.shift}, scale={self.scale}"


class ClassEnergy(Energy):
    """Class-conditional energy of a classifier (compose.h ClassEnergy):
    logit reading -logits[c]/T, or nll reading -log softmax(logits/T)[c]."""

    def __init__(self, classifier: nn.Module, cls: int, nll: bool = False, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"class-energy temperature must be > 0, got {temperature}")
        k = int(getattr(classifier, "num_classes", 0))
        if cls < 0 or cls >= k:
            raise ValueError(f"class {cls} out of range for a {k}-class model")
        self.classifier = classifier
        self.cls = int(cls)
        self.nll = bool(nll)
        self.temperature = float(temperature)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        l = self.classifier.logits(x) / self.temperature
        if self.nll:
            return -torch.log_softmax(l, 1).select(1, self.cls)
        return -l.select(1, self.cls)

    def extra_repr(self) -> str:
        return f"cls={self.cls}, nll={self.nll}, temperature={self.temperature}"


# -------------------------------------------------------------- builders

def _check(e) -> Energy:
    if not isinstance(e, nn.Module) or not hasattr(e, "energy"):
        raise TypeError(f"expected an energy module (with .energy(x)), got {type(e).__name__}")
    return e


def _and_terms(e, w: float, out: List[Tuple[float, nn.Module]]) -> None:
    # The Python twin of and_terms() in src/compose/attributes.cpp: nested sums
    # made by the algebra merge, their weights multiplied (in double).
    if isinstance(e, Sum) and e.flatten:
        for wi, t in zip(e.weights, e.terms):
            _and_terms(t, wi * w, out)
    else:
        out.append((w, e))


def and_(*energies) -> Sum:
    """AND: the sum of the energies (product of experts)."""
    if not energies:
        raise ValueError("and_ needs at least one energy")
    terms: List[Tuple[float, nn.Module]] = []
    for e in energies:
        _and_terms(_check(e), 1.0, terms)
    return Sum(terms)


def weighted(w: float, e) -> Sum:
    """w * E (the expression language's `w*atom`)."""
    terms: List[Tuple[float, nn.Module]] = []
    _and_terms(_check(e), float(w), terms)
    return Sum(terms)


def not_(e, alpha: float = None) -> Sum:
    """NOT: -alpha * E (alpha defaults to NOT_WEIGHT, `ebm compose --not-weight`)."""
    a = NOT_WEIGHT if alpha is None else float(alpha)
    if not a >= 0:
        raise ValueError(f"NOT weight must be >= 0, got {a}")
    return weighted(-a, e)


def make_not(positive, negative, alpha: float) -> Sum:
    """E_pos - alpha * E_neg, as compose.h's make_not (no flattening)."""
    return Sum([(1.0, _check(positive)), (-float(alpha), _check(negative))])


def or_(*energies, temperature: float = None) -> Or:
    """OR: -logsumexp(-s*E_i)/s, s = temperature (default OR_TEMPERATURE)."""
    s = OR_TEMPERATURE if temperature is None else float(temperature)
    kids: List[nn.Module] = []
    for e in energies:
        _check(e)
        if isinstance(e, Or) and e.flatten and e.temperature == s:
            kids.extend(list(e.terms))
        else:
            kids.append(e)
    return Or(kids, s)
