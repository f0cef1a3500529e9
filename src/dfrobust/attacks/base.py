"""The attack API: one call, ``attack(model, x, y) -> AttackResult``, and a registry of attacks.

Every attack is a small class configured with its parameters (torchattacks style). Calling it
puts the model in eval mode with frozen weights for the duration of the call, moves the images
to the model's device, runs the batched attack and returns an :class:`AttackResult` on the
device the images came from. Pixels stay in ``[0, 1]``; randomness comes from the attack's
``seed`` only, so a run is repeatable on the CPU.

>>> attack = make_attack("fgsm", eps=0.02)  # doctest: +SKIP
>>> result = attack(model, x, y)             # doctest: +SKIP
>>> result.success.float().mean()            # doctest: +SKIP

Labels are dfrobust's (fake = 0, real = 1) unless ``labels=`` says otherwise: ``attack(model, x, y,
labels="fake=1")`` reads DeepfakeBench's / CNNDetection's. For torchattacks habits,
:func:`adversarial_images` returns just the adversarial images (``result.x_adv``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dfrobust.config_checks import budget
from dfrobust.constants import PAPER_EPS
from dfrobust.errors import DfrobustError
from dfrobust.models.inference import eval_mode
from dfrobust.utils.labels import DFROBUST_LABELS, label_convention_flips, to_dfrobust_labels
from dfrobust.utils.params import check_params
from dfrobust.utils.plugins import Plugin, Registry, constructor_defaults, constructor_settings, declared_params

log = logging.getLogger(__name__)
#: Linf budgets above this (in [0, 1] pixel units) no longer give small perturbations: a warning says so.
LINF_WARN = 0.1
_warned: set[float] = set()


def warn_large_linf(eps: float, flag: str = "--eps") -> None:
    """Log a warning (once per value) for an Linf budget above :data:`LINF_WARN`; the attack still runs."""
    if eps > LINF_WARN and eps not in _warned:
        _warned.add(eps)
        log.warning(f"{flag} {eps:g} is more than {LINF_WARN:g} of the [0, 1] pixel range: a plainly visible "
                    f"perturbation, not a small one (the paper uses {PAPER_EPS:g})")  # fmt: skip


def budget_value(eps: Any, norm: str = "linf", flag: str = "--eps") -> float:
    """An already checked budget as a float (a NumPy or 0-d tensor number too); warns above :data:`LINF_WARN` for ``linf``."""
    value = float(eps)
    if norm == "linf":
        warn_large_linf(value, flag)
    return value


def check_eps(eps: float, norm: str = "linf", flag: str = "--eps") -> float:
    """An attack's budget, checked in one place (every attack's constructor calls this): a finite number >= 0.

    Images are in ``[0, 1]``, so an Linf budget above 1 is a budget in 0-255 units by mistake (8 for
    8/255): a one-line :class:`DfrobustError` that says so. Above :data:`LINF_WARN` it warns. An L2
    budget is a distance over all pixels and may exceed 1.
    """
    value = float(eps) if hasattr(eps, "__float__") and not isinstance(eps, (bool, str)) else eps  # a NumPy or 0-d tensor number
    if problem := budget(norm)(value):
        raise DfrobustError(f"eps ({flag}) = {eps!r} {problem}")
    if norm == "linf":
        warn_large_linf(value, flag)
    return value


@dataclass
class AttackResult:
    """What an attack returns for a batch of ``N`` images.

    Attributes:
        x_adv: adversarial images ``N x 3 x H x W`` in ``[0, 1]`` (float, not yet quantised).
        success: ``bool`` per image: the model misclassifies ``x_adv[i]`` (label differs from ``y[i]``).
        l2: L2 distance ``||x_adv - x||_2`` per image (over all pixels and channels).
        linf: Linf distance per image.
        settings: the attack's name and parameters (JSON-serialisable).
        extras: per-image tensors of length ``N`` that a given attack adds (CW: ``c``,
            ``kappa_reached``, ``margin`` ...).
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    settings: dict[str, Any]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x_adv)

    def to(self, device: str | torch.device) -> AttackResult:
        """The same result with every tensor on ``device``."""
        return dataclasses.replace(
            self,
            x_adv=self.x_adv.to(device),
            success=self.success.to(device),
            l2=self.l2.to(device),
            linf=self.linf.to(device),
            extras={k: v.to(device) for k, v in self.extras.items()},
        )


@dataclass(frozen=True)
class AttackBudget:
    """What an attack costs per image, at most (:meth:`Attack.budget`).

    Attributes:
        terms: the factors, e.g. ``[(5, "searches"), (1000, "steps")]``.
        per_image: their product: gradient steps or queries per image.
        unit: ``gradient steps`` or ``queries``.
    """

    terms: list[tuple[int, str]]
    per_image: int
    unit: str

    def describe(self, n_images: int) -> str:
        """``5 searches x 1,000 steps = 5,000 gradient steps per image x 24 images = 120,000 gradient steps``."""
        factors = " x ".join(f"{c:,} {w}" for c, w in self.terms)
        head = f"{factors} = " if len(self.terms) > 1 else ""
        return f"{head}{self.per_image:,} {self.unit} per image x {n_images:,} images = {self.per_image * n_images:,} {self.unit}"


def perturbation_norms(x_adv: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image L2 and Linf norms of ``x_adv - x``."""
    delta = (x_adv - x).flatten(1)
    return delta.norm(dim=1), delta.abs().amax(dim=1)


def per_image(v: torch.Tensor) -> torch.Tensor:
    """Reshape a per-image vector ``N`` to broadcast over ``N x C x H x W``."""
    return v.view(-1, 1, 1, 1)


def project_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Nearest point of the ``norm`` ball of radius ``eps`` around ``x`` (``linf`` or ``l2``), then clipped to ``[0, 1]``.

    Clipping to the image box after the ball keeps the point inside the ball (both are convex, centred on x).
    """
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * per_image((eps / norms).clamp(max=1.0))
    return (x + delta).clamp(0, 1)


def logit_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{i != y} Z_i - Z_y`` per row: positive when the prediction is not ``y``."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.amax(dim=1) - true


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients inside the block; the model's previous state comes back after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with eval_mode(model):
            yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class Attack(Plugin, ABC):
    """Base class: subclasses set ``name``, implement :meth:`perturb` and register with :func:`register_attack`.

    The constructor arguments of a subclass are its parameters; :attr:`settings` reports them
    with their resolved values. Subclasses store each parameter under an attribute of the
    same name. ``dfrobust attack`` derives one flag per parameter from the constructor: its
    type from the annotation (``float``, ``int``, ``str``, ``bool``, ``tuple[float, float]``,
    ``Literal[...]``), its default from the signature and its help from the class docstring's
    Google-style ``Args:`` section. A parameter named ``seed`` is set from ``--seed``.
    """

    name: str = "attack"

    @property
    def label(self) -> str:
        """The attack's name in result tables (``pgd`` tells its norm: ``pgd-l2``)."""
        return self.name

    @property
    def settings(self) -> dict[str, Any]:
        """``{"attack": name, <parameter>: value, ...}`` (JSON-serialisable)."""
        return constructor_settings(self, "attack")

    #: Parameters that multiply an attack's work per image, as :meth:`budget` names them: ``(parameter, word)``.
    BUDGET_TERMS = (
        ("search_steps", "searches"),
        ("restarts", "restarts"),
        ("max_steps", "steps"),
        ("steps", "steps"),
        ("queries", "queries"),
    )

    def budget(self) -> AttackBudget:
        """The most work this attack spends per image: its step, search, restart or query counts multiplied.

        An upper bound (attacks that stop early on an image spend less); a subclass whose cost has another shape
        overrides it. An attack with none of :data:`BUDGET_TERMS` takes one gradient step (FGSM).
        """
        settings = self.settings
        terms = [(int(settings[k]), word) for k, word in self.BUDGET_TERMS if isinstance(settings.get(k), int) and settings[k] > 1]
        per_image = 1
        for count, _ in terms:
            per_image *= count
        queries = any(word == "queries" for _, word in terms)
        return AttackBudget(terms, per_image, "queries" if queries else "gradient steps")

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return adversarial images (same device as ``x``) and per-image extras."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: Any = None, *, labels: str = DFROBUST_LABELS) -> AttackResult:
        """Attack images ``x`` (``N x 3 x H x W`` in ``[0, 1]``) with true labels ``y`` on ``model``.

        Args:
            model: a detector: images in ``[0, 1]`` -> 2 logits (fake = 0, real = 1); wrap any
                other classifier with :func:`dfrobust.wrap_detector`.
            x: the images.
            y: one 0/1 label per image (tensor, array or list), in the convention ``labels`` names;
                ``None`` attacks the model's own predictions (ART's habit).
            labels: ``"fake=0"`` (dfrobust's: fake 0, real 1; the default) or ``"fake=1"``
                (DeepfakeBench's, CNNDetection's). Labels that are not 0/1, one per image, are a
                one-line :class:`DfrobustError`.

        Returns:
            An :class:`AttackResult` on the images' device (``success`` is judged against ``y``).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be N x 3 x H x W, got shape {tuple(x.shape)}")
        label_convention_flips(labels)  # an unknown convention fails even without labels
        home = x.device
        device = model_device(model)
        x = x.detach().to(device, torch.float32)
        with frozen_eval(model):
            with torch.no_grad():  # attacks need 2 logits (fake, real): a one-logit model would get a zero gradient margin
                shape = tuple(model(x[:1]).shape)
            if shape != (1, 2):
                raise DfrobustError(
                    f"the model returns shape {shape} per image, not 2 logits (fake, real); wrap it with "
                    "dfrobust.wrap_detector(model, output=..., fake_index=...) or in a detector card and set its `output` key"
                )
            if y is None:
                with torch.no_grad():
                    y = model(x).argmax(1)
            else:
                y = to_dfrobust_labels(y.detach() if isinstance(y, torch.Tensor) else y, labels, len(x)).to(device)
            x_adv, extras = self.perturb(model, x, y)
            x_adv = x_adv.detach().clamp(0, 1)
            with torch.no_grad():
                success = model(x_adv).argmax(1) != y
        l2, linf = perturbation_norms(x_adv, x)
        result = AttackResult(x_adv, success, l2, linf, self.settings, {k: v.detach() for k, v in extras.items()})
        return result.to(home)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy loss with respect to the images ``x``."""
    x = x.detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


#: Rank of an attack that declares no order (after every ranked one).
UNRANKED = 1000
#: What an attack needs of the model.
ACCESS_KINDS = ("gradient", "score", "transfer")

#: Attack name -> class: the attack modules of this package and the ``dfrobust.attacks`` entry points.
ATTACKS: Registry[Attack] = Registry("attack", "dfrobust.attacks", "dfrobust.attacks")


@dataclass(frozen=True)
class AttackInfo:
    """What tables and figures need to know of an attack, declared with :func:`register_attack`.

    Attributes:
        labels: result label (``Attack.label``, the ``attack`` column of results) -> the name printed in
            tables (``{"pgd-linf": "PGD-Linf", "pgd-l2": "PGD-L2"}``); a label absent here prints in capitals.
        order: the attack's rank among table columns (an int, or one per label); unranked attacks
            (the default) follow the ranked ones, by name.
        paper: one of the paper's attacks (Table II both ways, Fig 2's images).
        transfers: a transfer attack (the report shows its blackbox columns apart).
        norm: the norm of its budget (``linf``, ``l2``; ``""``: set by a parameter).
        access: what it needs of the model: ``gradient``, ``score`` (queries only) or ``transfer``.
    """

    labels: dict[str, str] = field(default_factory=dict)
    order: int | dict[str, int] = UNRANKED
    paper: bool = False
    transfers: bool = False
    norm: str = ""
    access: str = "gradient"

    def rank(self, label: str) -> int:
        """The column rank of result label ``label``."""
        return self.order.get(label, UNRANKED) if isinstance(self.order, dict) else self.order


def register_attack(cls: type[Attack] | None = None, /, **info: Any) -> Any:
    """Class decorator: make an attack available to :func:`make_attack` under ``cls.name``, with its metadata.

    Used bare (``@register_attack``) or with :class:`AttackInfo` fields
    (``@register_attack(labels={"fgsm": "FGSM"}, order=0, paper=True, norm="linf")``), which the
    report reads through :func:`attack_info`. Another class under a name already taken is a
    :class:`~dfrobust.errors.DfrobustError`.
    """
    meta = AttackInfo(**info)
    if meta.access not in ACCESS_KINDS:
        raise DfrobustError(f"attack access {meta.access!r} is not one of {ACCESS_KINDS}")

    def add(c: type[Attack]) -> type[Attack]:
        c.info = meta
        return ATTACKS.register(c)

    return add(cls) if cls is not None else add


def attack_info(label: str) -> AttackInfo:
    """The metadata of the attack that writes result label ``label`` (or whose registry name it is)."""
    classes = attack_classes()
    for cls in classes.values():
        info = getattr(cls, "info", None)
        if info is not None and label in info.labels:
            return info
    cls = classes.get(label)
    if cls is None:  # a label that names a variant (``square-linf``, ``apgd-ce-l2``): the attack whose name it extends
        cls = next((classes[n] for n in sorted(classes, key=len, reverse=True) if label.startswith(f"{n}-")), None)
    return getattr(cls, "info", None) or AttackInfo()


def attack_display(label: str) -> str:
    """``cw`` -> ``CW-L2``: the attack's printed name (its label in capitals when it declares none)."""
    return attack_info(label).labels.get(label, label.upper())


def paper_attacks() -> list[str]:
    """The registry names of the paper's attacks, in column order (Fig 2 shows their images)."""
    infos = {n: getattr(c, "info", AttackInfo()) for n, c in attack_classes().items()}
    return sorted((n for n, i in infos.items() if i.paper), key=lambda n: (infos[n].rank(n), n))


def available_attacks() -> list[str]:
    """Names accepted by :func:`make_attack` (built-in, user modules in this package, entry points)."""
    return ATTACKS.names()


def attack_classes() -> dict[str, type[Attack]]:
    """Every attack class by name."""
    return ATTACKS.classes()


def attack_defaults(name: str) -> dict[str, Any]:
    """The default parameters of attack ``name`` (the paper's values where the paper has one)."""
    return ATTACKS.defaults(name)


def attack_section_defaults(path: list[str]) -> dict[str, Any] | None:
    """The parameters of ``[attack.NAME]`` for ``path == ["attack", NAME]`` of a registered attack (else ``None``).

    ``--set attack.NAME.key=value`` accepts each of them (and ``max_images`` and ``survivors_of``, which the attack
    stage reads).
    """
    if len(path) != 2 or path[0] != "attack" or path[1] not in attack_classes():
        return None
    return {**attack_defaults(path[1]), "max_images": 0, "survivors_of": []}


def check_attack_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of attack ``name``, checked by the constraints it declares (the constructor's own check, run early:
    ``dfrobust attack``'s flags before any data is read); a one-line :class:`DfrobustError` for the first bad one."""
    cls = attack_class(name)
    merged = {**constructor_defaults(cls), **params}
    check_params(cls.name, {k: c for k, c in declared_params(cls).items() if k in params}, merged)
    return params


def attack_param_checks() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """``{"attack.NAME": (constraints, defaults)}`` of every registered attack, for
    :func:`dfrobust.config_checks.validate_study_config`: the config checks an attack's section by the
    constraints its class declares (``params``), the same ones its constructor checks."""
    return {f"attack.{n}": (declared_params(c), constructor_defaults(c)) for n, c in attack_classes().items()}


def attack_class(name: str) -> type[Attack]:
    """The class registered as ``name`` (one-line error naming the choices otherwise)."""
    return ATTACKS.get(name)


def adversarial_images(
    attack: Attack | str, model: nn.Module, x: torch.Tensor, y: Any = None, *, labels: str = DFROBUST_LABELS, **params: Any
) -> torch.Tensor:
    """Just the adversarial images (torchattacks' habit: ``adv = atk(images, labels)``), ``N x 3 x H x W`` in ``[0, 1]``.

    ``attack`` is an :class:`Attack` or a registered name built with ``params``; ``y`` and ``labels``
    as for :meth:`Attack.__call__`. The whole :class:`AttackResult` (success, norms) is what calling
    the attack returns; this keeps only its ``x_adv``.

    >>> adv = adversarial_images("pgd", model, x, y, labels="fake=1", eps=8 / 255)  # doctest: +SKIP
    """
    if isinstance(attack, str):
        attack = make_attack(attack, **params)
    elif params:
        raise DfrobustError(f"parameters {', '.join(params)} go with an attack name; {attack.name} is already built")
    return attack(model, x, y, labels=labels).x_adv


def make_attack(name: str, *args: Any, **params: Any) -> Attack:
    """Build attack ``name`` with ``params`` (unknown parameters are a one-line error).

    The model comes at call time, not here (torchattacks' ``PGD(model, eps=...)`` shape is a
    one-line error that says so).

    >>> make_attack("fgsm", eps=0.03).settings
    {'attack': 'fgsm', 'eps': 0.03}
    """
    if args:
        what = "a model" if isinstance(args[0], nn.Module) else f"positional {args[0]!r}"
        raise DfrobustError(
            f"make_attack({name!r}, ...) got {what}: it takes parameters by keyword and the model at call time, "
            f"make_attack({name!r}, eps=8 / 255)(model, x, y)"
        )
    return ATTACKS.create(name, **params)
