"""Project-wide constants: class ids and names, the decision threshold."""

FAKE: int = 0
REAL: int = 1
#: Class names indexed by class id (alphabetical folder order: fake, real).
CLASS_NAMES: tuple[str, str] = ("fake", "real")
#: A detector says real when P(real) is at or above this (the paper's operating point).
DECISION_THRESHOLD: float = 0.5
#: The paper's FGSM budget (Linf, in [0, 1] pixel units: about 5/255): the default Linf radius of every attack
#: and of the threat model, written here once.
PAPER_EPS: float = 0.02

# Video and platform defaults (here, torch-free, so that building the CLI's parser stays light)
#: Frames per second of video time sampled from a clip, and at most this many per clip.
VIDEO_FPS: float = 2.0
VIDEO_MAX_FRAMES: int = 32
#: H.264 CRF of written videos (x264's own default; 0 lossless, 51 coarsest).
VIDEO_CRF: int = 23
#: The held-out platform chain when none is given: qualities and scales outside a typical --robust-to range.
HELDOUT_CHAIN: str = "jpeg:30-45,resize:0.4-0.5"
#: Largest image side any command accepts (a 4096 x 4096 RGB float image is 192 MiB already).
MAX_IMAGE_SIDE: int = 4096
