"""Project-wide constants: class ids and names."""

FAKE: int = 0
REAL: int = 1
#: Class names indexed by class id (alphabetical folder order: fake, real).
CLASS_NAMES: tuple[str, str] = ("fake", "real")
