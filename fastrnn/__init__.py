"""fastrnn: fused CPU, CUDA and Triton kernels for the Elman RNN, as drop-in torch.nn modules.

    import fastrnn
    rnn = fastrnn.RNN(64, 128, num_layers=2)      # instead of torch.nn.RNN(64, 128, num_layers=2)
    model = fastrnn.convert(model)                # or: swap every nn.RNN / nn.RNNCell in a model
"""
from . import _ops  # noqa: F401  (registers the fastrnn::* ops, fake kernels and autograd)
from . import _onnx
from . import backends, functional, reference
from .modules import RNN, RNNCell, convert

_onnx.register()  # torch.onnx.export of a model holding fastrnn modules: both exporters

__version__ = "0.1.0"

__all__ = ["RNN", "RNNCell", "convert", "backends", "functional", "reference", "__version__"]
