"""jaxstyle: behavioural stylometry with style vectors (chess).

``jaxstyle.chess`` is the data side: encodings, PGN/Lichess reader, tfds dataset,
synthetic players with known styles.
"""

from jaxstyle import chess

__all__ = ["chess"]
