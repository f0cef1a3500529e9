"""DIP early stopping (ES-WMV): the windowed-variance detector, per-image stops in a batch, off by default."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dfrobust.defenses.adaptive import check_bpda
from dfrobust.defenses.dip import (
    EARLY_STOP_FIELDS,
    ES_CHECK_EVERY,
    Dip,
    DipConfig,
    WindowedVarianceStop,
    config_key,
    dip_purify,
    purify_batch,
)
from dfrobust.defenses.dip_exact import dip_exact
from dfrobust.defenses.dip_unroll import dip_unrolled
from dfrobust.errors import DfrobustError

#: the authors' network structure at 2 levels: same code path, a fraction of the cost
SMALL = {"channels_down": (4, 8), "channels_up": (4, 8), "channels_skip": (0, 2), "input_channels": 6}
ES = {"early_stop": True, "es_window": 5, "es_patience": 10}


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _reference(seq: list[torch.Tensor], window: int, patience: int) -> tuple[int, int]:
    """The authors' loop for one image (a list as the window, the variance as a mean of per-output MSEs)."""
    kept: list[torch.Tensor] = []
    best, best_t, wait = float("inf"), 0, 0
    for t, x in enumerate(seq, 1):
        kept = (kept + [x.double()])[-window:]
        if len(kept) < window:
            continue
        mean = torch.stack(kept).mean(0)
        var = float(torch.stack([(mean - k).pow(2).mean() for k in kept]).mean())
        if var < best:
            best, best_t, wait = var, t, 0
        else:
            wait += 1
            if wait >= patience:
                return best_t, t
    return best_t, 0


def _next_check(t: int) -> int:
    return -(-t // ES_CHECK_EVERY) * ES_CHECK_EVERY


def _run(es: WindowedVarianceStop, seqs: torch.Tensor) -> None:
    """Feed ``B x T x ...`` sequences to ``es`` until every image stopped or they end."""
    for t in range(1, seqs.shape[1] + 1):
        es.update(seqs[:, t - 1], t)
        if es.stopped.all():
            break


def test_detector_stops_where_the_windowed_variance_stops_decreasing() -> None:
    # image 0: variance 0 from t=7 (window 3 of zeros), never lower: patience 4 runs out at t=11
    # image 1: its oscillation keeps the variance at 2/9 from t=3 (equal is no decrease): patience
    # runs out at t=7, before its zeros arrive; image 2: a shrinking oscillation, never stops
    a = [0.0, 1.0, 0.0, 1.0] + [0.0] * 16
    b = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0] + [0.0] * 14
    c = [(-1.0) ** t * 0.5**t for t in range(20)]
    seqs = torch.tensor([a, b, c]).view(3, 20, 1, 1, 1).expand(3, 20, 1, 2, 2).contiguous()
    es = WindowedVarianceStop(3, window=3, patience=4)
    _run(es, seqs)
    assert es.best_t.tolist() == [7, 3, 20]
    assert es.stopped_at.tolist() == [11, 7, 0]
    its, outs = es.result(seqs[:, -1], 20)
    assert its.tolist() == [7, 3, 20]
    for b in range(3):
        assert torch.equal(outs[b], seqs[b, its[b] - 1])


def test_detector_matches_the_reference_loop_on_noisy_sequences() -> None:
    gen = torch.Generator().manual_seed(1)
    steps = 120
    scale = torch.stack([(torch.arange(steps) - c).abs().float() / 20 + 0.1 for c in (30, 50, 70, 200)])
    seqs = scale.view(4, steps, 1, 1, 1) * torch.randn(4, steps, 3, 4, 4, generator=gen)
    es = WindowedVarianceStop(4, window=10, patience=15)
    _run(es, seqs)
    expected = [_reference(list(seqs[b]), 10, 15) for b in range(4)]
    assert list(zip(es.best_t.tolist(), es.stopped_at.tolist(), strict=True)) == expected
    assert len({t for t, _ in expected}) == 4 and expected[3][1] == 0  # distinct stops; the last never stops


def test_per_image_stops_differ_and_a_batch_equals_separate_runs() -> None:
    x, seeds = _images(3), [7, 8, 9]
    cfg = DipConfig(iterations=300, record_every=10, dtype="float64", **SMALL, **ES)
    batch = purify_batch(x, seeds, cfg, show_progress=False)
    assert batch.es_stopped_at.gt(0).all() and len(set(batch.es_iteration.tolist())) == 3
    # the batch ran until the first check after its last image stopped
    assert batch.steps == _next_check(int(batch.es_stopped_at.max())) < cfg.iterations
    assert batch.iterations[-1] <= batch.steps and batch.mse_input.shape[1] == len(batch.iterations)
    for b in range(3):
        alone = purify_batch(x[b : b + 1], seeds[b : b + 1], cfg, show_progress=False)
        assert alone.es_iteration.tolist() == batch.es_iteration[b : b + 1].tolist()
        assert alone.es_stopped_at.tolist() == batch.es_stopped_at[b : b + 1].tolist()
        assert alone.steps == _next_check(int(batch.es_stopped_at[b]))  # alone, it stops after its own point
        torch.testing.assert_close(alone.es_output, batch.es_output[b : b + 1], rtol=0, atol=1e-10)
        # the kept output is the fixed-T output at the detected iteration
        fixed = dataclasses.replace(cfg, early_stop=False)
        at = int(batch.es_iteration[b])
        ref = purify_batch(x[b : b + 1], seeds[b : b + 1], fixed, stop_at=at, show_progress=False)
        torch.testing.assert_close(ref.final, batch.es_output[b : b + 1], rtol=0, atol=1e-10)
    # observing only (the DIP study): the run goes on to the end, the stops are the same
    observed = purify_batch(x, seeds, dataclasses.replace(cfg, iterations=120), show_progress=False, run_to_end=True)
    assert observed.steps == 120 and observed.iterations[-1] == 120
    assert torch.equal(observed.es_iteration, batch.es_iteration) and torch.equal(observed.es_stopped_at, batch.es_stopped_at)
    torch.testing.assert_close(observed.es_output, batch.es_output, rtol=0, atol=0)


def test_the_purifier_classifies_at_each_images_stop() -> None:
    x = _images(2)
    dip = Dip(iterations=300, dtype="float64", **SMALL, **ES)
    traj = purify_batch(x, [4, 5], dip.config, show_progress=False)
    torch.testing.assert_close(dip.purify(x, seed=4), traj.es_output, rtol=0, atol=0)
    assert dip.settings["early_stop"] is True and dip.settings["es_window"] == 5
    # a run too short to fill the window keeps the last output
    short = purify_batch(x, [4, 5], dataclasses.replace(dip.config, iterations=3), show_progress=False)
    assert short.es_iteration.tolist() == [3, 3] and short.es_stopped_at.tolist() == [0, 0]
    assert torch.equal(short.es_output, short.final)


def test_early_stopping_is_off_by_default_and_changes_nothing() -> None:
    cfg = DipConfig(iterations=8, record_every=2, **SMALL)
    assert cfg.early_stop is False and Dip().early_stop is False
    traj = purify_batch(_images(2), [1, 2], cfg, show_progress=False)
    assert traj.steps == 8 and traj.iterations == [2, 4, 6, 8]
    assert traj.es_iteration is None and traj.es_stopped_at is None and traj.es_output is None
    # stage keys and study fingerprints of runs made before early stopping are unchanged
    key = config_key(cfg)
    assert not set(EARLY_STOP_FIELDS) & set(key)
    assert key == {k: v for k, v in dataclasses.asdict(cfg).items() if k not in EARLY_STOP_FIELDS}
    assert set(EARLY_STOP_FIELDS) <= set(config_key(dataclasses.replace(cfg, early_stop=True)))
    # the default purifier output is the fixed-T one
    dip = Dip(iterations=8, classify_at=5, **SMALL)
    torch.testing.assert_close(dip.purify(_images(1), seed=3), dip_purify(_images(1), dip.config, seed=3, iteration=5), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"es_window": 1}, "es_window"),
        ({"es_window": 0}, "es_window"),
        ({"es_window": 2.5}, "es_window"),
        ({"es_window": True}, "es_window"),
        ({"es_patience": 0}, "es_patience"),
        ({"es_patience": "10"}, "es_patience"),
        ({"early_stop": "yes"}, "early_stop"),
    ],
)
def test_bad_early_stopping_options_are_one_line_errors(kw: dict, needle: str) -> None:
    with pytest.raises(DfrobustError, match=needle) as err:
        DipConfig(**kw)
    assert "\n" not in str(err.value)
    with pytest.raises(DfrobustError, match=needle):
        Dip(**kw)


def test_fit_gradients_refuse_early_stopping() -> None:
    dip = Dip(iterations=10, early_stop=True, **SMALL)
    for bpda in ("exact", "unroll"):
        with pytest.raises(DfrobustError, match="early_stop") as err:
            check_bpda(dip, bpda)
        assert "\n" not in str(err.value)
    check_bpda(dip, "identity")
    check_bpda(dip, "fitted-blur")
    check_bpda(Dip(iterations=10, **SMALL), "exact")  # off: as before
    x = _images(1).requires_grad_()
    with pytest.raises(DfrobustError, match="early_stop"):
        dip_exact(x, [0], dip.config, at=5)
    with pytest.raises(DfrobustError, match="early_stop"):
        dip_unrolled(x, [0], dip.config, at=5, steps=2)
