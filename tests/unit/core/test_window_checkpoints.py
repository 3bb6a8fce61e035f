"""A pod's increase over checkpoints: scrapes kept apart, some dropped between them.

The direct source keeps, past a pod's newest scrapes, one checkpoint per
stretch of a long window. A checkpoint that ``continues`` the one before
(same process, no counter down, no series gone) lets a run of them count as
one difference; one after a reset dropped with the scrapes before it holds
their growth as its ``step``. Either way the increase is that of every scrape.
"""

from __future__ import annotations

from vigil.core.window import Scrape, growth, pod_increase

REQ = ("vigil_request_outcomes_total", (("origin", "live"), ("outcome", "success")))
ERR = ("vigil_request_outcomes_total", (("origin", "live"), ("outcome", "model_error")))
SUM = ("vigil_prediction_value_sum", ())


def scrape(at: float, started: float | None = 0.0, **values: float) -> Scrape:
    keys = {"req": REQ, "err": ERR, "sum": SUM}
    return Scrape(at, started, {keys[name]: value for name, value in values.items()})


def continuing(kept: Scrape) -> Scrape:
    return Scrape(kept.at, kept.started_at, kept.values, continues=True)


class TestARunOfContinuingScrapes:
    def test_counts_its_last_values_minus_its_first(self) -> None:
        scrapes = [
            scrape(0, req=10, sum=4.0),
            continuing(scrape(30, req=15, sum=-1.5)),  # a running sum may go down
            continuing(scrape(60, req=40, err=2, sum=2.5)),  # a series born inside the run
        ]
        assert pod_increase(scrapes, window_start=0) == {REQ: 30, ERR: 2, SUM: -1.5}
        assert pod_increase(scrapes, window_start=0) == pod_increase(
            [scrape(s.at, s.started_at, **_named(s)) for s in scrapes], window_start=0
        )

    def test_a_restart_ends_the_run(self) -> None:
        scrapes = [
            scrape(0, req=10),
            continuing(scrape(30, req=20)),
            scrape(60, started=50, req=3),
            continuing(scrape(90, started=50, req=9)),
        ]
        assert pod_increase(scrapes, window_start=0) == {REQ: 10 + 3 + 6}

    def test_a_window_starting_inside_the_run_counts_from_its_baseline(self) -> None:
        scrapes = [
            scrape(0, req=10),
            continuing(scrape(30, req=20)),
            continuing(scrape(60, req=50)),
        ]
        assert pod_increase(scrapes, window_start=45) == {REQ: 30}


class TestAStepStandsForTheScrapesDroppedBeforeIt:
    def test_the_growth_across_a_dropped_restart_is_kept(self) -> None:
        # 0 -> 30 grew 10; the process restarted at 40 and had served 5 by 60; 60 -> 90
        # grew 4. Dropped, the scrape at 30 leaves its growth to the one at 60.
        every = [scrape(0, req=10), scrape(30, req=20), scrape(60, started=40, req=5)]
        step = growth(every[0], every[1])
        step[REQ] += growth(every[1], every[2])[REQ]
        kept = [
            every[0],
            Scrape(60, 40, every[2].values, step=step),
            scrape(90, started=40, req=9),
        ]
        assert pod_increase(kept, window_start=0) == {REQ: 10 + 5 + 4}
        assert pod_increase([*every, kept[-1]], window_start=0) == {REQ: 10 + 5 + 4}

    def test_it_is_not_counted_when_its_scrape_is_the_baseline(self) -> None:
        kept = [
            scrape(0, req=10),
            Scrape(60, 40, {REQ: 5}, step={REQ: 15}),
            scrape(90, started=40, req=9),
        ]
        assert pod_increase(kept, window_start=60) == {REQ: 4}

    def test_a_process_started_inside_the_window_counts_from_zero_not_its_step(self) -> None:
        kept = [Scrape(60, 40, {REQ: 5}, step={REQ: 15}), scrape(90, started=40, req=9)]
        assert pod_increase(kept, window_start=30) == {REQ: 9}


def _named(kept: Scrape) -> dict[str, float]:
    names = {REQ: "req", ERR: "err", SUM: "sum"}
    return {names[key]: value for key, value in kept.values.items()}
