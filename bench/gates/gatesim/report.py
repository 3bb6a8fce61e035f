"""Per-cell statistics of simulated rollouts, and the markdown tables.

A cell is (policy, case, rate, judge). Its error rate is the share of
rollouts that ended the wrong way: for a candidate the policy accepts
(A/A, or one still within its limits) a rollback or a failure; for an
A/B case (the candidate is worse than a limit allows) a promotion.
Intervals are exact (Clopper-Pearson, 95 %).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from gatesim.simulate import Outcome
from gatesim.world import Case


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion k/n."""
    if n <= 0:
        return (0.0, 1.0)
    tail = (1.0 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    return low, high


@dataclass(frozen=True)
class CellStats:
    policy: str
    case: str
    acceptable: bool
    rate: float
    judge: str
    n: int
    promoted: int
    rolled_back: int
    failed: int
    undecided: int
    seconds: tuple[float, float]  # median, p90 over decided rollouts
    live_requests: tuple[float, float]
    candidate_requests: tuple[float, float]
    #: Failed gates of the final decision of rollbacks, most common first.
    rollback_gates: tuple[tuple[str, int], ...]

    @property
    def wrong(self) -> int:
        return self.rolled_back + self.failed if self.acceptable else self.promoted

    @property
    def wrong_interval(self) -> tuple[float, float]:
        return clopper_pearson(self.wrong, self.n)

    def to_dict(self) -> dict[str, object]:
        low, high = self.wrong_interval
        return {
            "policy": self.policy,
            "case": self.case,
            "acceptable": self.acceptable,
            "rate": self.rate,
            "judge": self.judge,
            "n": self.n,
            "promoted": self.promoted,
            "rolledBack": self.rolled_back,
            "failed": self.failed,
            "undecided": self.undecided,
            "wrong": self.wrong,
            "wrongRate": self.wrong / self.n if self.n else None,
            "wrongInterval95": [low, high],
            "secondsMedianP90": list(self.seconds),
            "liveRequestsMedianP90": list(self.live_requests),
            "candidateRequestsMedianP90": list(self.candidate_requests),
            "rollbackGates": {" + ".join(k.split(",")): v for k, v in self.rollback_gates},
        }


def _median_p90(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return (float("nan"), float("nan"))
    arr = np.asarray(values, dtype=np.float64)
    return float(np.median(arr)), float(np.quantile(arr, 0.9))


def cell_stats(
    policy: str, case: Case, rate: float, judge: str, outcomes: Sequence[Outcome]
) -> CellStats:
    results = Counter(o.result for o in outcomes)
    decided = [o for o in outcomes if o.result != "undecided"]
    gates = Counter(",".join(o.gates) or "-" for o in outcomes if o.result == "rolled back")
    return CellStats(
        policy=policy,
        case=case.name,
        acceptable=case.acceptable,
        rate=rate,
        judge=judge,
        n=len(outcomes),
        promoted=results["promoted"],
        rolled_back=results["rolled back"],
        failed=results["failed"],
        undecided=results["undecided"],
        seconds=_median_p90([o.seconds for o in decided]),
        live_requests=_median_p90([o.live_requests for o in decided]),
        candidate_requests=_median_p90([o.candidate_requests for o in decided]),
        rollback_gates=tuple(gates.most_common()),
    )


def _percent(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}" if n else "-"


def _wrong(cell: CellStats) -> str:
    low, high = cell.wrong_interval
    return f"**{_percent(cell.wrong, cell.n)}** [{100 * low:.1f}, {100 * high:.1f}]"


def _pair(values: tuple[float, float], digits: int = 0) -> str:
    return " / ".join(f"{v:,.{digits}f}" for v in values)


def _rate(rate: float) -> str:
    return f"{rate:g}/s"


def _gates(cell: CellStats) -> str:
    if not cell.rollback_gates:
        return ""
    return ", ".join(f"{k.replace(',', '+')} {v}" for k, v in cell.rollback_gates[:3])


def markdown(cells: Sequence[CellStats], judges: Sequence[str]) -> str:
    """One table per policy; the judges' columns side by side."""
    lines: list[str] = []
    for policy in dict.fromkeys(c.policy for c in cells):
        lines += [f"#### Policy `{policy}`", ""]
        head = ["case", "rate"]
        for judge in judges:
            tag = f" ({judge})" if len(judges) > 1 else ""
            head += [
                f"n{tag}",
                f"promoted / rolled back / failed %{tag}",
                f"wrong % [95 % CI]{tag}",
                f"time to decision s, median / p90{tag}",
                f"live requests, median / p90{tag}",
                f"rolled back by{tag}",
            ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows: dict[tuple[str, float], dict[str, CellStats]] = {}
        for cell in cells:
            if cell.policy == policy:
                rows.setdefault((cell.case, cell.rate), {})[cell.judge] = cell
        for (case, rate), by_judge in rows.items():
            row = [case, _rate(rate)]
            for judge in judges:
                cell = by_judge.get(judge)
                if cell is None:
                    row += [""] * 6
                    continue
                outcome = " / ".join(
                    _percent(k, cell.n) for k in (cell.promoted, cell.rolled_back, cell.failed)
                )
                if cell.undecided:
                    outcome += f" (undecided {_percent(cell.undecided, cell.n)})"
                row += [
                    str(cell.n),
                    outcome,
                    _wrong(cell),
                    _pair(cell.seconds),
                    _pair(cell.live_requests),
                    _gates(cell),
                ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)
