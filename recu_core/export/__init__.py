"""Bit-packed export of trained binary networks and a reference 1-bit inference engine."""

from recu_core.export.bnn_file import export_model, load_packed_model, read_bnn

__all__ = ["export_model", "load_packed_model", "read_bnn"]
