"""`python -m review.report`: the apology variants side by side, and whether their acceptance rates differ.

    python -m review.report [--database_url URL] [--baseline VARIANT]

Per variant (and model and prompt versions): drafts decided, accepted (approved as drafted), edited and rejected,
each with its 95% Wilson interval; then each variant's acceptance against the baseline's, by Fisher's exact test,
and when the difference is not significant, how many more decisions would show it at 80% power.
"""

from __future__ import annotations

import sys

from pydantic import Field
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

from review.comparison import compare
from review.config import DEFAULT_DATABASE_URL
from review.db import make_engine, session_factory, upgrade
from review.schemas import AcceptanceTest, Rate, VariantComparison
from review.stats import CONFIDENCE, variant_stats


class ReportSettings(BaseSettings):
    """Which desk to read, and which variant the others are measured against."""

    model_config = SettingsConfigDict(env_prefix="REVIEW_", cli_prog_name="python -m review.report", frozen=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, description="the desk's database (as for python -m review)")
    baseline: str | None = Field(None, description="the variant the others are tested against (default: the most "
                                 "decided)")


def _rate(rate: Rate) -> str:
    return f"{rate.count} ({rate.share:.0%}, {rate.low:.0%}-{rate.high:.0%})"


def _verdict(test: AcceptanceTest) -> str:
    head = (
        f"{test.variant} against {test.baseline}: accepted {test.difference * 100:+.1f} points; {test.test}: "
        f"p = {test.p_value:.3g}, "
    )
    if test.significant:
        return head + f"significant at alpha = {test.alpha:.3g}."
    if test.decisions_per_variant is None:
        return head + "not significant: the two accepted the same share, and no number of decisions tells them apart."
    return head + (
        f"not significant at alpha = {test.alpha:.3g}. To find a difference this large ({test.power_calculation}), "
        f"{test.decisions_per_variant} decisions per variant are needed: {test.more_decisions} more in all."
    )


def render(comparison: VariantComparison) -> str:
    """The comparison as a table and one verdict per test."""
    if not comparison.variants:
        return "No decisions yet."
    header = ("variant", "model", "apology prompt", "decided", "accepted", "edited", "rejected")
    rows = [header] + [
        (v.variant, v.model_id, v.apology_prompt_version, str(v.decided), _rate(v.accepted), _rate(v.edited),
         _rate(v.rejected))
        for v in comparison.variants
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [f"Decisions per apology variant; counts with their share and {CONFIDENCE:.0%} Wilson interval.", ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines += ["", *(_verdict(test) for test in comparison.tests)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(ReportSettings, cli_args=sys.argv[1:] if argv is None else argv)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_factory(engine)() as session:
        stats = variant_stats(session)
    try:
        comparison = compare(stats, settings.baseline)
    except ValueError as error:
        print(f"python -m review.report: {error}", file=sys.stderr)
        return 2
    print(render(comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
