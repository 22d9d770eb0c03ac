"""World seeds of every split, stated once: expert data, `sim_eval` (validation), test, out-of-distribution.

A world is seeded `[split seed, k]` (`build_world(scenario, [seed, k], worlds)`). Expert data uses
data seeds in DATA_SEEDS (`[data_seed, cycle]`); validation, test and OOD each use one seed outside
that range, so no two splits can share a world by construction. Validation (`sim_eval`, best.ckpt)
and test (`eval closed-loop`, the demo's report) are in-distribution held-out worlds; OOD worlds
are drawn from the "ood" distribution (colours and distances never in training) on `OOD_SCENARIOS`.
"""

from __future__ import annotations

DATA_SEEDS = range(0, 1000)  # expert episode files
TEST_SEED = 1000  # `eval closed-loop` and the demo's figures
VAL_SEED = 2000  # `sim_eval` during training: best.ckpt is chosen here, never on the test worlds
OOD_SEED = 3000  # out-of-distribution worlds (worlds="ood")
SPLIT_SEEDS = {"test": TEST_SEED, "val": VAL_SEED, "ood": OOD_SEED}


def split_of(seed: int) -> str:
    """The split a world seed belongs to: data, test, val, ood, or other (a seed no split uses)."""
    if seed in DATA_SEEDS:
        return "data"
    return next((name for name, s in SPLIT_SEEDS.items() if s == seed), "other")


def check_data_seed(seed: int, where: str = "seed") -> int:
    """A data seed must lie in DATA_SEEDS (so expert files never share a world with a held-out split)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed not in DATA_SEEDS:
        raise ValueError(f"{where} = {seed!r}: expected an integer in [{DATA_SEEDS.start}, {DATA_SEEDS.stop}) "
                         f"(world seeds from {DATA_SEEDS.stop} on are held out: test {TEST_SEED}, val {VAL_SEED}, ood {OOD_SEED})")
    return seed


def check_val_seed(seed: int, where: str = "sim_eval.seed") -> int:
    """A validation seed may be neither a data seed nor the test seed (best.ckpt must not be chosen on either)."""
    split = split_of(seed)
    if split in ("data", "test"):
        raise ValueError(f"'{where}' = {seed!r} is a {split} world seed; expected a held-out seed outside "
                         f"[{DATA_SEEDS.start}, {DATA_SEEDS.stop}) other than the test seed {TEST_SEED} (e.g. {VAL_SEED})")
    return seed
