"""Real models for tests and the demo, trained on scikit-learn's bundled data.

Each model is written as an MLServer model folder (``model.joblib``,
``model-settings.json``, ``settings.json``) that ``mlserver start <folder>``
serves, plus the reference profile of its training data. Nothing is
downloaded: the wine, breast-cancer and diabetes data ship inside
scikit-learn. Development tooling: needs the ``dev`` extras.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.profile import build_profile


@dataclass(frozen=True)
class TrainedModel:
    """A served model's folder and the data it was trained on."""

    name: str
    version: str
    folder: Path
    features: list[str]
    X: npt.NDArray[np.float64]
    y: npt.NDArray[Any]
    profile_path: Path

    @property
    def storage_uri(self) -> str:
        return f"file://{self.folder}"

    def profile_json(self) -> str:
        return self.profile_path.read_text()

    def predict(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """What the served estimator answers for ``rows`` (its own file, loaded here)."""
        import joblib

        return np.asarray(joblib.load(self.folder / "model.joblib").predict(rows))


def write_mlserver_folder(folder: Path, name: str, version: str, estimator: Any) -> None:
    """An MLServer 1.7 model folder serving ``estimator`` (or a joblib file) over v2."""
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(estimator, Path):
        (folder / "model.joblib").write_bytes(estimator.read_bytes())
    else:
        joblib.dump(estimator, folder / "model.joblib")
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": version},
            },
            indent=2,
        )
    )
    # Parallel inference workers crash at start with current uvloop.
    (folder / "settings.json").write_text(json.dumps({"parallel_workers": 0}, indent=2))


def write_mlserver_settings(
    root: Path, *, http_port: int, grpc_port: int, metrics_port: int, host: str = "127.0.0.1"
) -> None:
    """Server settings for ``mlserver start <root>`` beside other local processes.

    Its own ports (several servers share the loopback interface), its
    metrics files inside ``root``, and no parallel inference workers (they
    crash at start with current uvloop).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(
        json.dumps(
            {
                "debug": False,
                "parallel_workers": 0,
                "host": host,
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "metrics_dir": str(root / ".metrics"),
            }
        )
    )


def train_wine(
    folder: Path,
    name: str = "wine",
    version: str = "1",
    *,
    shuffled_labels: bool = False,
    seed: int = 0,
) -> TrainedModel:
    """A classifier on sklearn's wine data (178 rows, 13 features, 3 classes).

    ``shuffled_labels`` trains on permuted labels: a model that looks healthy
    to operations metrics but disagrees with a good one (the "bad
    replacement" of the tests and the demo).
    """
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    data = load_wine()
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target)
    labels = np.random.default_rng(seed).permutation(y) if shuffled_labels else y
    model = RandomForestClassifier(n_estimators=30, random_state=seed).fit(X, labels)
    features = [str(f) for f in data.feature_names]
    return served_estimator(folder, name, version, model, X, y, features)


def mislabelled_wine(
    folder: Path, stable: TrainedModel, version: str = "2", share: float = 0.1
) -> tuple[TrainedModel, float]:
    """The wine forest trained with ``share`` of the rows (a fixed draw) given another class,
    and its accuracy on the training rows: a model that answers like a good one, fast,
    whose worse accuracy only labels reveal.
    """
    from sklearn.ensemble import RandomForestClassifier

    y = np.asarray(stable.y)
    wrong = y.copy()
    rows = np.random.default_rng(0).choice(len(y), round(share * len(y)), replace=False)
    wrong[rows] = (y[rows] + 1) % 3
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(stable.X, wrong)
    accuracy = float(np.mean(forest.predict(stable.X) == y))
    served = served_estimator(folder, stable.name, version, forest, stable.X, y, stable.features)
    return served, accuracy


def served_estimator(
    folder: Path,
    name: str,
    version: str,
    estimator: Any,
    X: npt.NDArray[np.float64],
    y: npt.NDArray[Any],
    features: list[str],
) -> TrainedModel:
    """A fitted estimator's MLServer folder, and its reference profile from its own answers."""
    write_mlserver_folder(folder, name, version, estimator)
    profile = build_profile(
        X,
        feature_names=features,
        predictions=estimator.predict(X),
        model_name=name,
        model_version=version,
    )
    profile_path = folder / "profile.json"
    profile_path.write_text(profile.to_json())
    return TrainedModel(name, version, folder, features, X, y, profile_path)
