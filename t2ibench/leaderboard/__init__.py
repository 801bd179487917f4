"""The leaderboard: protocol-grouped rankings, scaling plots, Pareto frontiers, power-law fits and a
static site. The page template (CSS + sorting JS) ships inside this package (`assets/`), so an
installed, non-editable t2ibench builds the same site; the top-level `leaderboard/` folder of the
repository is only the default place the generated site goes (`leaderboard/site/`).
"""

from t2ibench.leaderboard.analysis import (
    PowerLawFit,
    ProtocolGroup,
    ScalingFit,
    fit_power_law,
    fit_scaling,
    group_by_protocol,
    pareto_frontier,
    spearman,
)
from t2ibench.leaderboard.reference import PAPER_FITS, TABLE4

__all__ = ["PAPER_FITS", "TABLE4", "PowerLawFit", "ProtocolGroup", "ScalingFit", "build_site", "fit_power_law",
           "fit_scaling", "group_by_protocol", "pareto_frontier", "spearman"]


def build_site(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 -- lazy: matplotlib loads only when building
    from t2ibench.leaderboard.site import build_site as _build

    return _build(*args, **kwargs)
