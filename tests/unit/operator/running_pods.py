"""The rollouts read a revision's running pods from the health loop's index; these tests
keep their pods in a plain mapping they change as they go."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vigil.operator.health import PodInfo
from vigil.operator.rollouts import RunningPods


def running_in(pods: Callable[[], Mapping[tuple[str, str], PodInfo]]) -> RunningPods:
    def running(namespace: str, name: str, revision: str) -> list[tuple[str, PodInfo]]:
        return sorted(
            (
                (pod, info)
                for (pod_namespace, pod), info in pods().items()
                if (pod_namespace, info.model_deployment, info.revision)
                == (namespace, name, revision)
                and info.running
            ),
            key=lambda item: item[0],
        )

    return running
