"""Relistings: what a finished listing did not show is gone, in its namespace or all."""

from manual_clock import Clock

from vigil.common.relisting import LISTING_SECONDS, Relistings


def test_what_a_listing_did_not_show_is_gone_once_it_is_over() -> None:
    clock = Clock()
    relistings = Relistings(clock)
    for key in (("ml", "a"), ("ml", "b"), ("other", "c")):
        relistings.seen(key)
    clock.now += 5
    relistings.listing_started("ml")
    relistings.seen(("ml", "a"))  # listed again; b was deleted meanwhile
    relistings.listing_done("ml")
    assert relistings.ghosts() == []  # not over yet
    clock.now += LISTING_SECONDS
    assert relistings.ghosts() == [("ml", "b")]
    assert relistings.ghosts() == []


def test_a_cluster_wide_listing_covers_every_namespace_and_an_empty_one_too() -> None:
    clock = Clock()
    relistings = Relistings(clock)
    relistings.seen(("ml", "a"))
    relistings.seen(("other", "c"))
    relistings.forget(("ml", "a"))  # deleted, as the watch said
    clock.now += 5
    relistings.listing_started(None)
    relistings.listing_done(None)
    clock.now += LISTING_SECONDS
    assert relistings.ghosts() == [("other", "c")]


def test_a_listing_that_failed_drops_nothing() -> None:
    # The API server unreachable: kopf's listing gives up without completing.
    clock = Clock()
    relistings = Relistings(clock)
    relistings.seen(("ml", "a"))
    clock.now += 5
    relistings.listing_started("ml")
    clock.now += LISTING_SECONDS * 3
    assert relistings.ghosts() == []


def test_a_second_listing_within_the_window_judges_from_its_own_start() -> None:
    # Two relistings 10 s apart (API servers restarted in turn): b, shown by the first and
    # deleted before the second, was kept for good (the first's start was kept).
    clock = Clock()
    relistings = Relistings(clock)
    relistings.listing_started("ml")
    relistings.seen(("ml", "a"))
    relistings.seen(("ml", "b"))
    relistings.listing_done("ml")
    clock.now += 10
    relistings.listing_started("ml")
    relistings.seen(("ml", "a"))
    relistings.listing_done("ml")
    clock.now += LISTING_SECONDS
    assert relistings.ghosts() == [("ml", "b")]


def test_a_listing_under_way_holds_its_namespace_open_until_it_would_have_failed() -> None:
    # What was seen before it may be gone already; one not complete within the window failed.
    clock = Clock()
    relistings = Relistings(clock)
    relistings.listing_started("ml")
    assert relistings.listing_open("ml")
    assert not relistings.listing_open("other")
    relistings.listing_started(None)
    assert relistings.listing_open("other")
    clock.now += LISTING_SECONDS
    assert not relistings.listing_open("ml")
    assert not relistings.listing_open("other")
