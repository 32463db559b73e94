"""The API's settings: ``recu_core.settings.ServiceSettings`` (every layer's settings live
in that one module), named here for the service's own modules."""

from recu_core.settings import ServiceSettings

__all__ = ["ServiceSettings"]
