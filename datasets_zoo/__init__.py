"""Model zoos: the bundled tasks they are trained on, how to build them, and how to read
them (native and public formats), with datasets and a Lightning data module over them.

The architectures zoos are made of live in the core (:mod:`wspace.families`); they are
re-exported here for convenience."""
from wspace.families import SIREN, MLPClassifier, SmallCNN, build_family, family_spec, init_weight_space

from .adapters import detect_format
from .datamodule import ZooDataModule, open_zoo, resolve_split_by
from .dataset import WeightStats, ZooDataset, collate_dense
from .format import ZooWriter
from .tasks import get_task, subset_tasks
from .zoo import Zoo

__all__ = [
    "Zoo", "ZooDataset", "ZooDataModule", "ZooWriter", "WeightStats", "collate_dense", "detect_format", "get_task",
    "subset_tasks", "open_zoo", "resolve_split_by",
    "MLPClassifier", "SmallCNN", "SIREN", "family_spec", "build_family", "init_weight_space",
]
