"""Training loggers from the config's `trainer.logger` list (csv, tensorboard), and GIFs in TensorBoard.

Both write under the run's output directory. TensorBoard's run has a fixed version, so a resumed
run (``--resume last``) continues the same TensorBoard run (its steps carry on from the
checkpoint's global step); the CSV logger keeps Lightning's numbered versions, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KNOWN_LOGGERS = ("csv", "tensorboard")


def build_loggers(configs: dict[str, Any], output_dir: Path) -> list[Any]:
    """Lightning loggers named by `trainer.logger` (default: csv); raises ValueError on an unknown name."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    names = configs.get("trainer", {}).get("logger", ["csv"])
    names = [names] if isinstance(names, str) else list(names or [])
    loggers = []
    for name in names:
        if name == "csv":
            loggers.append(CSVLogger(output_dir, name="logs"))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(output_dir, name="tensorboard", version=0, default_hp_metric=False))
        else:
            raise ValueError(f"'trainer.logger': unknown logger {name!r}; expected a list of {list(KNOWN_LOGGERS)}")
    return loggers or [CSVLogger(output_dir, name="logs")]


def log_gif(loggers: list[Any], tag: str, gif_path: str | Path, step: int) -> bool:
    """Write an animated GIF file into TensorBoard's image panel (it plays there); False without a TensorBoard logger."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    loggers = [lg for lg in loggers if isinstance(lg, TensorBoardLogger)]
    if not loggers:
        return False
    data = Path(gif_path).read_bytes()
    with Image.open(gif_path) as im:
        width, height = im.size
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    for lg in loggers:
        lg.experiment._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    return True
