"""The user's own detectors (``reproduce --detector CARD ...``): no training; attacked whitebox and blackbox from each to every other."""

from __future__ import annotations

from typing import Any

from dfrobust.roles import Role, register_roles


def user_detectors(cfg: dict[str, Any]) -> list[str]:
    """The detector cards a study was given (empty: the study trains the paper's detectors)."""
    return [str(p) for p in cfg["run"].get("detectors") or []]


@register_roles(order=-10)
def user_roles(cfg: dict[str, Any]) -> list[Role]:
    """One role per card, named by the card; the first is the DIP study's classifier and Fig 2's source."""
    from dfrobust.models.loading import model_display_name

    roles = []
    for i, card in enumerate(user_detectors(cfg)):
        name = model_display_name(card)
        roles.append(
            Role(
                name,
                "card",
                "yours",
                f"{name} (your detector)",
                card=card,
                transfer_group="yours",
                purifier_classifier=i == 0,
                sample_source=i == 0,
                order=-10 + i,
            )
        )
    return roles
