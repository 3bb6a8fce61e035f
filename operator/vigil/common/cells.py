"""How a text cell of a CSV reads as the JSON value a client sends: rules shared by
``vigil profile build`` and ``vigil golden build``, so that a profile and a golden set made
from one file key its values alike."""

from __future__ import annotations

import re

#: A number written with a leading zero ("02134", "-007"): an identifier, not a quantity.
PADDED = re.compile(r"\s*[+-]?0\d")
#: Text pandas reads as booleans when a whole column is made of them.
BOOLEANS = {
    **dict.fromkeys(("True", "TRUE", "true"), True),
    **dict.fromkeys(("False", "FALSE", "false"), False),
}
