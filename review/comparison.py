"""Apology variants compared by acceptance: Fisher's exact test of each against a baseline, and how many decisions
would show a difference that is not significant yet."""

from __future__ import annotations

import math

from scipy.stats import fisher_exact, norm

from review.schemas import AcceptanceTest, VariantComparison, VariantStats

ALPHA = 0.05
POWER = 0.80
TEST = "Fisher's exact test, two-sided"
POWER_CALCULATION = "two-proportion z-test, equal groups, 80% power"


def sample_size(first: float, second: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Decisions per group for a two-sided two-proportion z-test at level `alpha` to find `first` and `second` apart
    with probability `power` (Fleiss' formula, without continuity correction); none when they are equal."""
    if first == second:
        return None
    pooled = (first + second) / 2
    spread = (
        norm.ppf(1 - alpha / 2) * math.sqrt(2 * pooled * (1 - pooled))
        + norm.ppf(power) * math.sqrt(first * (1 - first) + second * (1 - second))
    )
    return math.ceil(spread**2 / (first - second) ** 2)


def acceptance_test(variant: VariantStats, baseline: VariantStats, alpha: float = ALPHA) -> AcceptanceTest:
    """`variant` against `baseline`: accepted (approved as drafted) or not, of the decided drafts of each."""
    table = [
        [variant.accepted.count, variant.decided - variant.accepted.count],
        [baseline.accepted.count, baseline.decided - baseline.accepted.count],
    ]
    p_value = float(fisher_exact(table).pvalue)
    significant = p_value < alpha
    needed = sample_size(variant.accepted.share, baseline.accepted.share, alpha)
    more = None if needed is None else max(0, needed - variant.decided) + max(0, needed - baseline.decided)
    return AcceptanceTest(
        variant=variant.variant, baseline=baseline.variant,
        difference=variant.accepted.share - baseline.accepted.share, test=TEST, p_value=p_value, alpha=alpha,
        significant=significant, power_calculation=POWER_CALCULATION, decisions_per_variant=needed,
        more_decisions=0 if significant else more,
    )


def compare(stats: list[VariantStats], baseline: str | None = None) -> VariantComparison:
    """Every variant with decisions against the baseline: the variant named `baseline`, else the most decided.

    With more than two variants, each test is held to ALPHA divided by the number of tests (Bonferroni), so that
    the chance of any false alarm stays under ALPHA.

    Raises:
        ValueError: no variant is named `baseline`.
    """
    if baseline is not None and baseline not in {entry.variant for entry in stats}:
        raise ValueError(f"no decisions on a variant named {baseline!r}")
    if not stats:
        return VariantComparison(variants=[], tests=[])
    reference = next(entry for entry in stats if baseline in (None, entry.variant))
    others = [entry for entry in stats if entry is not reference]
    alpha = ALPHA / max(1, len(others))
    return VariantComparison(
        variants=stats, tests=[acceptance_test(entry, reference, alpha) for entry in others]
    )
