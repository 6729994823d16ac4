"""Model zoos: the architectures they are made of, the bundled tasks they are trained on,
how to build them, and how to read them (native and public formats)."""
from . import families  # noqa: F401  (registers the families with wspace.spec)
from .adapters import detect_format
from .dataset import WeightStats, ZooDataset, collate_dense
from .families import SIREN, MLPClassifier, SmallCNN, build_family, family_spec, init_weight_space
from .format import ZooWriter
from .tasks import get_task, subset_tasks
from .zoo import Zoo

__all__ = [
    "Zoo", "ZooDataset", "ZooWriter", "WeightStats", "collate_dense", "detect_format", "get_task", "subset_tasks",
    "MLPClassifier", "SmallCNN", "SIREN", "family_spec", "build_family", "init_weight_space",
]
