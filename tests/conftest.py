import pytest
import torch

from tests.helpers import TINY_MAXIM

# CI has two cores; fixing the thread count keeps runs comparable.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_maxim():
    from restore.models import MAXIM

    torch.manual_seed(0)
    return MAXIM(**TINY_MAXIM)
