"""Deprecated: the data tools' weight files are in `t2ibench.data.curation_weights` (one `weights.py`,
`t2ibench/weights.py`, is enough). This alias goes in the next release."""

import warnings

from t2ibench.data.curation_weights import *  # noqa: F401,F403

warnings.warn("t2ibench.data.weights is now t2ibench.data.curation_weights", DeprecationWarning, stacklevel=2)
