"""python evaluate.py suite=<denoise|deblur|derain|dehaze|lowlight> (ckpt=FILE | weights=FILE | model=identity)

Scores every benchmark of the suite found under data_root with its paper's protocol and prints
one row per dataset. The logic lives in restore/evaluation.py; docs/evaluation.md has the details.
"""

import hydra
from omegaconf import DictConfig

from restore import CONF_DIR
from restore.allocator import keep_freed_memory
from restore.errors import exit_on_user_error
from restore.evaluation import evaluate


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        evaluate(cfg)


if __name__ == "__main__":
    keep_freed_memory()
    main()
