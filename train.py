"""Train a restoration model: ``python train.py task=deblur`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from restore import CONF_DIR
from restore.allocator import keep_freed_memory


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from restore.training import main as train  # heavy imports only once the config is valid

    return train(cfg)


if __name__ == "__main__":
    keep_freed_memory()
    main()
