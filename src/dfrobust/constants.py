"""Project-wide constants: class ids and names, the decision threshold."""

FAKE: int = 0
REAL: int = 1
#: Class names indexed by class id (alphabetical folder order: fake, real).
CLASS_NAMES: tuple[str, str] = ("fake", "real")
#: A detector says real when P(real) is at or above this (the paper's operating point).
DECISION_THRESHOLD: float = 0.5
#: Largest image side any command accepts (a 4096 x 4096 RGB float image is 192 MiB already).
MAX_IMAGE_SIDE: int = 4096
