"""actors.core.placement: where a grown connection's pair goes, and the groups' names. Pure, no Ray."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.core.placement import PAIR_BUNDLE, group_name, least_used


def test_the_node_with_the_fewest_pairs_is_chosen() -> None:
    assert least_used(["a", "b", "c"], ["a", "a", "b", "c", "c"]) == "b"


def test_ties_go_to_the_first_node_given() -> None:
    assert least_used(["b", "a"], []) == "b"
    assert least_used(["a", "b", "c"], ["a", "b"]) == "c"
    assert least_used(["a", "b", "c"], ["c"]) == "a"


def test_pairs_on_dead_nodes_do_not_count() -> None:
    # "gone" died: its pairs are being moved; "a" holds one live pair, "b" none.
    assert least_used(["a", "b"], ["gone", "gone", "a"]) == "b"


def test_no_node_leaves_the_choice_to_ray() -> None:
    assert least_used([], ["a"]) is None


@given(
    nodes=st.lists(st.sampled_from("abcdef"), min_size=1, unique=True),
    used=st.lists(st.sampled_from("abcdefgh")),
)
def test_the_choice_is_a_live_node_that_no_other_live_node_beats(nodes: list[str], used: list[str]) -> None:
    chosen = least_used(nodes, used)
    assert chosen in nodes
    assert all(used.count(chosen) <= used.count(n) for n in nodes)
    # Adding pairs one by one where it says keeps the live nodes within one pair of each other.
    counts = {n: used.count(n) for n in nodes}
    spread_before = max(counts.values()) - min(counts.values())
    for _ in range(3 * len(nodes)):
        node = least_used(nodes, [n for n, k in counts.items() for _ in range(k)])
        assert node is not None
        counts[node] += 1
    assert max(counts.values()) - min(counts.values()) <= max(1, spread_before)


def test_group_names_carry_the_run_and_the_connection() -> None:
    assert group_name("r1") == "tickvisor-r1-startup"
    assert group_name("r1", "stock-3") == "tickvisor-r1-stock-3"
    assert group_name("r1", "stock-3").startswith(group_name("r1", ""))
    assert not group_name("r2", "stock-3").startswith(group_name("r1", ""))


def test_the_bundle_reserves_no_cpu_and_is_not_empty() -> None:
    # Ray refuses an empty bundle; a CPU share would compete with the job's other actors and tasks.
    assert PAIR_BUNDLE
    assert "CPU" not in PAIR_BUNDLE
    assert all(v > 0 for v in PAIR_BUNDLE.values())
