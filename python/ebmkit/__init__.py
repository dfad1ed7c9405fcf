"""ebmkit for plain PyTorch: the built-in architectures, the model loader and
the energy algebra of ebmkit (the C++ toolkit), with the same energies.

    import ebmkit
    e = ebmkit.load("models/mnist-ood")          # native, ensemble or TorchScript
    energies = e.energy(x)                       # x [B,1,28,28] in [0,1] -> [B]
    both = ebmkit.load("models/mnist-dsm") & ebmkit.load("models/mnist-eft")
    expr = ebmkit.parse("digit=3 & !thick", ebmkit.attributes(["models/mnist-attr-digit",
                                                               "models/mnist-attr-thickness"]))
"""
from .energy import (NOT_WEIGHT, OR_TEMPERATURE, Affine, ClassEnergy, Energy, Or, Sum, and_, free_energy,
                     make_not, not_, or_, weighted)
from .models import ARCHITECTURES, ConvClassifier, ConvEBM, NoiseConditionalEBM, UNetEnergy, build
from .loading import (ScriptEnergy, formats, load, load_card, model_hash, register_format, save_torchscript,
                      sha256_file)
from .expr import Attributes, Expr, attributes, parse, parse_expr
from .data import read_idx, read_images

__version__ = "0.2.0"

__all__ = [
    "NOT_WEIGHT", "OR_TEMPERATURE", "Affine", "ClassEnergy", "Energy", "Or", "Sum", "and_", "free_energy",
    "make_not", "not_", "or_", "weighted", "ARCHITECTURES", "ConvClassifier", "ConvEBM",
    "NoiseConditionalEBM", "UNetEnergy", "build",
    "ScriptEnergy", "formats", "load", "load_card", "model_hash", "register_format", "save_torchscript",
    "sha256_file", "Attributes", "Expr", "attributes", "parse", "parse_expr", "read_idx", "read_images",
]
