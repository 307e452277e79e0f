"""The MAXIM family and the identity baseline. Variants are configured in ``conf/model/*.yaml``."""

from restore.models.convert import CheckpointError, load_official
from restore.models.identity import IdentityBaseline
from restore.models.maxim import MAXIM

__all__ = ["MAXIM", "CheckpointError", "IdentityBaseline", "load_official"]
