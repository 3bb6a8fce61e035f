"""Reference profiles: what the training data looked like, in a versioned JSON format.

Public API (kept small on purpose; the operator's health evaluation and the
sidecar depend on it):

* :func:`build_profile` - make a profile from a NumPy array or DataFrame;
* :func:`load_profile` / :func:`parse_profile` - read and validate one;
* :class:`ReferenceProfile`, :class:`FeatureProfile` - the data, with
  ``to_json()`` and ``fingerprint``;
* :data:`OTHER` - the label of the "everything else" category bucket.
* :class:`ProfileError` (refused) and :class:`ProfileWarning` (built, but a
  feature monitors less than it seems to: bins that merge in float32; or the JSON
  is too large for ``kubectl apply``'s annotation).

The format is documented in ``docs/reference-profile.md``.
"""

from vigil.profile.build import build_profile, profile_column, validation_score
from vigil.profile.model import (
    FORMAT,
    OTHER,
    SCHEMA_VERSION,
    DriftDefaults,
    FeatureProfile,
    ProfileError,
    ProfileWarning,
    ReferenceProfile,
    Summary,
    Validation,
    category_key,
    load_profile,
    parse_profile,
)

__all__ = [
    "FORMAT",
    "OTHER",
    "SCHEMA_VERSION",
    "DriftDefaults",
    "FeatureProfile",
    "ProfileError",
    "ProfileWarning",
    "ReferenceProfile",
    "Summary",
    "Validation",
    "build_profile",
    "category_key",
    "load_profile",
    "parse_profile",
    "profile_column",
    "validation_score",
]
