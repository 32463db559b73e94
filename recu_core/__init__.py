"""ReCU binary neural networks in pure PyTorch (Xu et al., ICCV 2021).

Import the parts you need (``recu_core.train``, ``recu_core.models``, ...);
``recu_core.config`` imports no torch, so services can validate run specs cheaply.
"""

__version__ = "0.1.0"
