"""Chapter 8's two trained networks: their training sets and configurations, the experiment that trains
them, and their committed ``paper``-scale weights.

Chapter 8 reads the phases of generation off two score networks of chapter 5's design
(:class:`diffnb.nets.ScoreMLP`): one trained on ``P`` points of the spectral-gaps paper's linear manifold
(``d = 100``, ``m = 40``, unit variance), one on scikit-learn's 8x8 digits minus their mean image. At ``quick``
and ``full`` scale they train in a minute or a few (the chapter trains them in a background process). At
``paper`` scale (width 256, depth 4, 100 000 steps of batch 512) each takes about 90 minutes on a CPU core,
so the experiment ``phase-networks`` (:mod:`diffnb.experiments`) trains them, and its exported results
(``results/phase-networks/paper/``, :mod:`diffnb.results`) hold each network's moving-average weights, its
loss curve and its training time (``trained_seconds``; the JSON record's ``seconds`` and ``hardware`` are
those of the job's own run, which only loads a network that the training cache already holds). Everything
the chapter measures it computes from the networks, in a few minutes at ``paper`` scale;
:func:`committed_networks` rebuilds them.

A job is the whole description of one network: its training set (``data``), :class:`~diffnb.nets.NetConfig`
and :class:`~diffnb.training.TrainConfig` as dicts. A committed result is used only for a job equal to the
one the package defines now, so a change of configuration cannot serve stale weights.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffnb.config import get_device, get_scale, pick
from diffnb.data import LinearManifold
from diffnb.data.images import load_images
from diffnb.nets import NetConfig
from diffnb.training import TrainConfig, TrainedModel, train_ensemble

#: The experiment's registered name.
EXPERIMENT = "phase-networks"
#: The two networks, in the order of the experiment's jobs.
NETWORKS = ("linear", "digits")
#: Prefix of the weights' names among a result's arrays.
WEIGHTS = "ema."


def network_jobs(scale: str | None = None) -> list[dict[str, Any]]:
    """The jobs of the two networks at ``scale`` (default: ``DIFFNB_SCALE``): ``linear``, then ``digits``.

    Both use chapter 5's network, wider than ``d``, with the preconditioning of Karras et al. (2022,
    ``sigma_data = 0.5``) and variance-exploding noise matching with ``sigma`` log-uniform between
    ``sigma_min`` (0.02 for the manifold; 0.005 for the digits, whose smallest variances resolve only at small
    noise) and ``sigma_max`` (5 at ``quick`` scale, 10 above, so that training reaches past the theory's
    ``t_I``).
    """
    p = functools.partial(pick, scale=get_scale(scale))
    net = {
        "width": p(quick=128, full=128, paper=256),
        "depth": p(quick=3, full=3, paper=4),
        "emb_dim": 32,
        "emb_hidden": 64,
        "conditioning": "film",
        "parametrization": "edm",
        "sigma_data": 0.5,
    }
    train = {
        "steps": p(quick=1_500, full=8_000, paper=100_000),
        "batch_size": p(quick=256, full=512, paper=512),
        "lr": 3e-3,
        "sigma_max": p(quick=5.0, full=10.0, paper=10.0),
        "seed": 0,
    }
    manifold = {"set": "linear", "d": 100, "blocks": [40], "scales": [1.0], "seed": 0}
    return [
        {
            "network": "linear",
            "data": {**manifold, "n_train": p(quick=2_000, full=5_000), "sample_seed": 1},
            "net": NetConfig(d=manifold["d"], **net).to_dict(),
            "train": TrainConfig(sigma_min=0.02, **train).to_dict(),
        },
        {
            "network": "digits",
            "data": {"set": "digits", "centred": True},
            "net": NetConfig(d=64, **net).to_dict(),
            "train": TrainConfig(sigma_min=0.005, **train).to_dict(),
        },
    ]


def _job(job: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(job, dict) or job.get("network") not in NETWORKS:
        raise ValueError(f"job must be one of network_jobs()'s dicts, with 'network' in {NETWORKS}, got {job!r}")
    return job


def manifold(job: dict[str, Any]) -> LinearManifold:
    """The linear manifold of a ``linear`` job's training set."""
    data = _job(job)["data"]
    if data["set"] != "linear":
        raise ValueError(f"the {job['network']!r} network is not trained on a linear manifold")
    return LinearManifold(data["d"], tuple(data["blocks"]), tuple(data["scales"]), seed=data["seed"])


def training_set(job: dict[str, Any]) -> np.ndarray:
    """The training set of a job, float64 of shape ``(P, d)``: the manifold's points, or the centred digits
    (1497 images of 64 pixels in ``[-1, 1]``, minus their mean image)."""
    data = _job(job)["data"]
    if data["set"] == "linear":
        return manifold(job).sample(data["n_train"], seed=data["sample_seed"])
    images = load_images("digits", flat=True, dtype=torch.float64).numpy()
    return images - images.mean(axis=0)


def configs(job: dict[str, Any]) -> tuple[NetConfig, TrainConfig]:
    """The network and training configurations of a job."""
    job = _job(job)
    return NetConfig.from_dict(job["net"]), TrainConfig.from_dict(job["train"])


def train_network(job: dict[str, Any], **options: Any) -> TrainedModel:
    """Train a job's network through the cache (``options`` go to :func:`diffnb.training.train_ensemble`)."""
    return train_ensemble([training_set(job)], *configs(job), **options)[0]


def run_network_job(job: dict[str, Any]) -> dict[str, Any]:
    """One job of the experiment: the network's moving-average weights (``ema.<name>``), its loss at every
    step, its number of training points and its training time in seconds (also when the network came from
    the training cache, where the experiment's own record would count only the loading)."""
    trained = train_network(job)
    weights = {f"{WEIGHTS}{name}": value.cpu().numpy() for name, value in trained.model.state_dict().items()}
    seconds = trained.extra.get("trained_seconds", trained.seconds)
    return {
        **weights,
        "losses": np.asarray(trained.losses),
        "n_train": trained.n_train,
        "trained_seconds": float(seconds),
    }


def network_from_result(job: dict[str, Any], result: dict[str, Any]) -> TrainedModel:
    """Rebuild a job's network from its result (:func:`run_network_job`), with the moving-average weights,
    on :func:`diffnb.config.get_device`, through :meth:`diffnb.training.TrainedModel.from_record` as the
    training cache rebuilds one.

    The final raw weights are not kept in a result, so ``raw_state`` is empty; ``seconds`` is 0 and
    ``extra["trained_seconds"]`` the training time.
    """
    _job(job)
    record = {
        "net_config": job["net"],
        "train_config": job["train"],
        "ema_state": {
            name.removeprefix(WEIGHTS): torch.as_tensor(np.asarray(value))
            for name, value in result.items()
            if name.startswith(WEIGHTS)
        },
        "raw_state": {},
        "losses": result["losses"],
        "n_train": result["n_train"],
        "seconds": result["trained_seconds"],
    }
    return TrainedModel.from_record(record, get_device())


def committed_networks(
    scale: str | None = None, folder: Path | str | None = None
) -> dict[str, tuple[TrainedModel, dict]]:
    """The networks committed for this scale's jobs, by name, each with its JSON record (package version,
    commit, hardware). Committed results are read at ``paper`` scale only, as :func:`diffnb.results.gather`
    reads them; elsewhere the dict is empty. At ``paper`` scale a network without a current committed
    result is left out, with a warning (training it takes about 90 minutes on a CPU core).

    ``folder``: where committed results live (default :func:`diffnb.results.results_dir`).
    """
    from diffnb.results import committed_entries

    scale = get_scale(scale)
    if scale != "paper":
        return {}
    jobs, entries = network_jobs(scale), committed_entries(EXPERIMENT, scale, folder)
    missing = [job["network"] for job, entry in zip(jobs, entries, strict=True) if entry is None]
    if missing:
        warnings.warn(
            f"{EXPERIMENT}: no current committed result for {', '.join(missing)} at paper scale; it will be "
            f"trained (about 90 minutes each on a CPU core; `python -m diffnb run {EXPERIMENT} --scale paper "
            "--export` precomputes them)",
            stacklevel=2,
        )
    return {
        job["network"]: (network_from_result(job, entry["result"]), entry["meta"])
        for job, entry in zip(jobs, entries, strict=True)
        if entry is not None
    }


__all__ = [
    "EXPERIMENT",
    "NETWORKS",
    "committed_networks",
    "configs",
    "manifold",
    "network_from_result",
    "network_jobs",
    "run_network_job",
    "train_network",
    "training_set",
]
