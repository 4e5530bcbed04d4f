"""The run directory: one experiment's files, each stage reading what the previous one wrote.

    RUN/dataset.json        normalised annotations (iconolens.data.dataset_json)
    RUN/model/              checkpoint: weights.pt + meta.json
    RUN/maps/<method>/      raw maps at feature resolution, one file per image (iconolens.explain.store)
    RUN/metrics/            JSON and CSV tables
    RUN/boxes/              COCO JSON detections derived from maps
    RUN/sanity/             the parameter randomisation test of the model's maps (iconolens.evaluate.sanity)
    RUN/report/             figures and HTML
    RUN/iiif/               the run as a IIIF manifest (iconolens.data.iiif_export; default folder)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDirectory:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def dataset_json(self) -> Path:
        return self.root / "dataset.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def maps_root(self) -> Path:
        return self.root / "maps"

    def maps_dir(self, method: str) -> Path:
        return self.maps_root / method

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def boxes_dir(self) -> Path:
        return self.root / "boxes"

    @property
    def sanity_dir(self) -> Path:
        return self.root / "sanity"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"
