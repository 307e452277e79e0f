"""The MAXIM family. Variants are configured in ``conf/model/*.yaml``."""

from restore.models.convert import CheckpointError, load_official
from restore.models.maxim import MAXIM

__all__ = ["MAXIM", "CheckpointError", "load_official"]
