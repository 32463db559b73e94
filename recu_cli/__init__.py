"""The ``recu`` command: local training (recu_core) and the service client (HTTP only)."""
